//! The hostile-file corpus (issue 12, docs/reliability.md): files a user may drop on the page —
//! spreadsheets given as CSV, wrong encodings, zip bombs, crafted adapters, workspaces and fused
//! models — each sent to the page's session exactly as the browser sends it. Every case must give
//! one error whose message names what is wrong, no panic, nothing saved, and the workspace exactly
//! as it was.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use lorafuse::host::block_on;
use lorafuse::limits;
use lorafuse::worker::protocol::{DataRole, Event, Request};
use lorafuse::worker::session::{Host, Session};
use lorafuse::workspace::zipfile;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

#[derive(Default)]
struct Recorder(RefCell<Vec<Event>>);

impl Host for Recorder {
    fn emit(&self, event: Event) {
        self.0.borrow_mut().push(event);
    }
    async fn pause(&self) {}
}

fn upload(bytes: Vec<u8>, file_name: &str) -> Request {
    Request::Upload {
        task: "sentiment".into(),
        role: DataRole::Train,
        file_name: file_name.into(),
        bytes,
        text_column: String::new(),
        label_column: String::new(),
        delimiter: None,
        header: true,
    }
}

fn import(bytes: Vec<u8>) -> Request {
    Request::Import {
        file_name: "upload.zip".into(),
        bytes,
    }
}

/// A zip of `files` built with the `zip` crate directly (our writer refuses some of these).
fn raw_zip(files: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut zw = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in files {
        zw.start_file(*name, opts).unwrap();
        zw.write_all(bytes).unwrap();
    }
    zw.finish().unwrap().into_inner()
}

fn zip(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    zipfile::write(files).unwrap()
}

/// The real PEFT adapter of the fixtures (r = 8 on query and value), as its two files.
fn peft_files() -> BTreeMap<String, Vec<u8>> {
    ["adapter_config.json", "adapter_model.safetensors"]
        .iter()
        .map(|n| {
            let p = common::fixture(&format!("minilm/peft_lora/{n}"));
            (n.to_string(), common::read(&p))
        })
        .collect()
}

/// The adapter files with `adapter_config.json` edited by `edit`.
fn peft_with_config(edit: impl Fn(&mut serde_json::Value)) -> BTreeMap<String, Vec<u8>> {
    let mut files = peft_files();
    let mut cfg: serde_json::Value = serde_json::from_slice(&files["adapter_config.json"]).unwrap();
    edit(&mut cfg);
    files.insert(
        "adapter_config.json".into(),
        serde_json::to_vec(&cfg).unwrap(),
    );
    files
}

/// The adapter files with `adapter_model.safetensors` replaced.
fn peft_with_weights(weights: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
    let mut files = peft_files();
    files.insert("adapter_model.safetensors".into(), weights);
    files
}

/// A safetensors file from a raw JSON header and data.
fn safetensors_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The fixture adapter's weights with every value of its first tensor set to NaN.
fn nan_weights() -> Vec<u8> {
    let bytes = &peft_files()["adapter_model.safetensors"];
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let t = st.tensor(n).unwrap();
            let data = if i == 0 {
                f32::NAN.to_le_bytes().repeat(t.data().len() / 4)
            } else {
                t.data().to_vec()
            };
            (n.to_string(), t.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, s, d)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d);
            (n.clone(), v.unwrap())
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A workspace bundle holding the fixture adapter as task `peft`, with `edit` applied to its
/// manifest and `extra` files added.
fn workspace(
    edit: impl Fn(&mut serde_json::Value),
    extra: &[(&str, Vec<u8>)],
) -> BTreeMap<String, Vec<u8>> {
    let mut manifest = serde_json::json!({
        "format": lorafuse::workspace::bundle::BUNDLE_FORMAT,
        "tasks": [{
            "name": "peft",
            "settings": lorafuse::workspace::bundle::TaskSettings::default(),
            "examples": 1, "test_examples": 0, "has_adapter": true
        }],
        "has_fusion": false
    });
    edit(&mut manifest);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    );
    files.insert(
        "tasks/0/train.jsonl".into(),
        b"{\"text\":\"fine\",\"label\":\"pos\"}\n".to_vec(),
    );
    for (n, b) in peft_files() {
        files.insert(format!("tasks/0/adapter/{n}"), b);
    }
    for (n, b) in extra {
        files.insert(n.to_string(), b.clone());
    }
    files
}

/// A fusion manifest for the workspace above, with `edit` applied.
fn fusion_manifest(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let sha =
        lorafuse::workspace::task_files::sha256_hex(&peft_files()["adapter_model.safetensors"]);
    let mut m = serde_json::json!({
        "format": lorafuse::fusion::files::FUSION_FORMAT,
        "base_model_sha256": "",
        "d_model": 384,
        "heads": 4,
        "adapters": [{"task": "peft", "adapter_sha256": sha}],
        "tasks": [{"task": "peft", "labels": ["neg", "pos"]}]
    });
    edit(&mut m);
    serde_json::to_vec(&m).unwrap()
}

fn with_fusion(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    zip(&workspace(
        |m| m["has_fusion"] = true.into(),
        &[
            ("fusion/fusion_manifest.json", fusion_manifest(edit)),
            ("fusion/fusion.safetensors", b"unused".to_vec()),
        ],
    ))
}

fn xlsx() -> Vec<u8> {
    raw_zip(
        &[
            ("[Content_Types].xml", b"<Types/>"),
            ("xl/workbook.xml", b"<workbook/>"),
        ],
        CompressionMethod::Deflated,
    )
}

fn utf16le(text: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

/// Every hostile case: a name, the request, and the words its error must contain.
fn corpus() -> Vec<(&'static str, Request, String)> {
    let too_big = vec![b'a'; limits::MAX_DATA_BYTES + 1];
    let mut many_classes = String::from("text,label\n");
    for i in 0..=limits::MAX_CLASSES {
        many_classes.push_str(&format!("row {i},class {i}\n"));
    }
    let many_entries: Vec<(String, Vec<u8>)> = (0..=limits::MAX_ZIP_ENTRIES)
        .map(|i| (format!("f{i}.txt"), Vec::new()))
        .collect();
    let many_entries: Vec<(&str, &[u8])> = many_entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let mut duplicate = raw_zip(
        &[
            ("adapter_config.json", b"{}"),
            ("bdapter_config.json", b"{}"),
        ],
        CompressionMethod::Stored,
    );
    for i in 0..duplicate.len() - 19 {
        if &duplicate[i..i + 19] == b"bdapter_config.json" {
            duplicate[i] = b'a';
        }
    }
    let header = |h: &str| safetensors_raw(h, &[0u8; 16]);
    let s = |x: &str| x.to_string();
    vec![
        // Data uploads.
        (
            "xlsx as csv",
            upload(xlsx(), "data.csv"),
            s("is an Excel workbook (.xlsx)"),
        ),
        (
            "pdf as csv",
            upload(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3".to_vec(), "data.csv"),
            s("is a PDF document"),
        ),
        (
            "gzip as csv",
            upload(vec![0x1F, 0x8B, 8, 0, 0, 0], "data.csv"),
            s("gzip-compressed"),
        ),
        (
            "old xls",
            upload(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0".to_vec(), "data.csv"),
            s("old-format Office file"),
        ),
        (
            "utf-16 without bom",
            upload(utf16le("text,label\nhi,x\n", false), "data.csv"),
            s("NUL byte"),
        ),
        (
            "utf-16 lone surrogate",
            upload(
                [vec![0xFF, 0xFE], vec![0x00, 0xD8, b'a', 0]].concat(),
                "data.csv",
            ),
            s("not valid UTF-16 LE"),
        ),
        (
            "windows-1252",
            upload(b"text,label\ncaf\xE9,x\n".to_vec(), "data.csv"),
            s("not valid UTF-8 (first invalid byte on line 2"),
        ),
        (
            "empty",
            upload(b"  \n\n".to_vec(), "data.csv"),
            s("the file is empty"),
        ),
        (
            "header only",
            upload(b"text,label\n".to_vec(), "data.csv"),
            s("the file has no data rows"),
        ),
        (
            "no text column",
            upload(b"sentence,label\nhi,x\n".to_vec(), "data.csv"),
            s("no column named `text`"),
        ),
        (
            "over the size limit",
            upload(too_big, "big.csv"),
            format!("more than the limit of {} bytes", limits::MAX_DATA_BYTES),
        ),
        (
            "1001 classes",
            upload(many_classes.into_bytes(), "data.csv"),
            s("1001 different labels, more than the limit of 1000"),
        ),
        (
            "jsonl of arrays",
            upload(b"[1,2]\n[3]\n".to_vec(), "data.jsonl"),
            s("not a JSON object"),
        ),
        // Zips.
        (
            "not a zip",
            import(b"PK\x03\x04 but no zip".to_vec()),
            s("not a zip file"),
        ),
        (
            "zip bomb",
            import(raw_zip(
                &[("tasks/0/train.jsonl", &vec![b' '; 64 << 20])],
                CompressionMethod::Deflated,
            )),
            s("looks like a zip bomb"),
        ),
        (
            "path traversal",
            import(raw_zip(
                &[("../../evil.json", b"{}")],
                CompressionMethod::Stored,
            )),
            s("unsafe path"),
        ),
        (
            "absolute path",
            import(raw_zip(
                &[("/etc/adapter_config.json", b"{}")],
                CompressionMethod::Stored,
            )),
            s("unsafe path"),
        ),
        (
            "control character in a path",
            import(raw_zip(
                &[("a\u{1b}[31m.json", b"{}")],
                CompressionMethod::Stored,
            )),
            s("control characters"),
        ),
        (
            "duplicate entry",
            import(duplicate),
            s("an entry name appears twice"),
        ),
        (
            "too many entries",
            import(raw_zip(&many_entries, CompressionMethod::Stored)),
            s("1001 entries, more than the limit of 1000"),
        ),
        (
            "unrelated zip",
            import(zip(&[("notes.txt".into(), b"hi".to_vec())].into())),
            s("neither a lorafuse workspace"),
        ),
        // PEFT adapters.
        (
            "adapter with NaN weights",
            import(zip(&peft_with_weights(nan_weights()))),
            s("NaN or infinite values"),
        ),
        (
            "adapter rank 100000",
            import(zip(&peft_with_config(|c| c["r"] = 100_000.into()))),
            s("adapter_config.json: r must be in 1..=1024, got 100000"),
        ),
        (
            "adapter rank above the model's width",
            import(zip(&peft_with_config(|c| c["r"] = 512.into()))),
            s("r is 512, more than the 384 dimensions"),
        ),
        (
            "adapter targeting the pooler",
            import(zip(&peft_with_config(|c| {
                c["target_modules"] = serde_json::json!(["pooler"])
            }))),
            s("target module \"pooler\" matches no linear"),
        ),
        (
            "adapter alpha negative",
            import(zip(&peft_with_config(|c| c["lora_alpha"] = (-1.0).into()))),
            s("lora_alpha must be positive"),
        ),
        (
            "adapter DoRA",
            import(zip(&peft_with_config(|c| c["use_dora"] = true.into()))),
            s("DoRA"),
        ),
        (
            "adapter config not JSON",
            import(zip(&peft_with_config(|c| *c = serde_json::json!([1])))),
            s("adapter_config.json is not a JSON object"),
        ),
        (
            "safetensors duplicate names",
            import(zip(&peft_with_weights(header(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            )))),
            s("the tensor name \"a\" appears twice"),
        ),
        (
            "safetensors header too long",
            import(zip(&peft_with_weights(
                [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat(),
            ))),
            s("its header declares 18446744073709551615 bytes, more than the limit"),
        ),
        (
            "safetensors bad offsets",
            import(zip(&peft_with_weights(header(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,64]}}"#,
            )))),
            s("adapter_model.safetensors is not a safetensors file"),
        ),
        (
            "safetensors huge shape",
            import(zip(&peft_with_weights(header(
                r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,16]}}"#,
            )))),
            s("adapter_model.safetensors is not a safetensors file"),
        ),
        (
            "safetensors I64",
            import(zip(&peft_with_weights(header(
                r#"{"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
            )))),
            s("has dtype I64; only F32, F16 and BF16"),
        ),
        (
            "safetensors foreign tensor",
            import(zip(&peft_with_weights(header(
                r#"{"classifier.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            )))),
            s("unexpected tensor \"classifier.weight\""),
        ),
        (
            "adapter for layer 40",
            import(zip(&peft_with_weights(header(
                r#"{"base_model.model.encoder.layer.40.attention.self.query.lora_A.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            )))),
            s("is for layer 40, but the model has 6 layers"),
        ),
        (
            "adapter wrong shape",
            import(zip(&peft_with_weights(header(
                r#"{"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            )))),
            s("has shape [4], expected [8, 384]"),
        ),
        (
            "task meta with a million labels",
            import(zip(&{
                let mut f = peft_files();
                let labels: Vec<String> = (0..1_000_000).map(|i| i.to_string()).collect();
                f.insert("lorafuse_task.json".into(), serde_json::to_vec(&serde_json::json!({
                "format": lorafuse::workspace::task_files::TASK_FORMAT, "task": "t", "labels": labels,
                "base_model": "", "base_model_sha256": "", "lora": lorafuse::lora::LoraConfig::default(),
                "train": lorafuse::train::TrainConfig::default(), "train_examples": 1, "metrics": null,
                "adapter_sha256": ""
            })).unwrap());
                f
            })),
            s("lorafuse_task.json: it lists 1000000 labels"),
        ),
        // Workspaces.
        (
            "workspace of 100 tasks",
            import(zip(&workspace(
                |m| {
                    let t = m["tasks"][0].clone();
                    m["tasks"] = serde_json::Value::Array(vec![t; 100]);
                },
                &[],
            ))),
            s("lists 100 tasks, more than the limit of 16"),
        ),
        (
            "workspace task name with escapes",
            import(zip(&workspace(
                |m| m["tasks"][0]["name"] = "a\u{7}b".into(),
                &[],
            ))),
            s("unusable task name"),
        ),
        (
            "workspace duplicate task",
            import(zip(&workspace(
                |m| {
                    let t = m["tasks"][0].clone();
                    m["tasks"] = serde_json::Value::Array(vec![t.clone(), t]);
                },
                &[],
            ))),
            s("lists the task \"peft\" twice"),
        ),
        (
            "workspace with 0 epochs",
            import(zip(&workspace(
                |m| m["tasks"][0]["settings"]["train"]["epochs"] = 0.into(),
                &[],
            ))),
            s("epochs must be in 1..=1000, got 0"),
        ),
        (
            "workspace with a bad data line",
            import(zip(&workspace(
                |_| {},
                &[("tasks/0/train.jsonl", b"{\"text\":1}\n".to_vec())],
            ))),
            s("tasks/0/train.jsonl: there is no column named `label`"),
        ),
        (
            "workspace adapter missing",
            import(zip(&{
                let mut f = workspace(|_| {}, &[]);
                f.remove("tasks/0/adapter/adapter_model.safetensors");
                f
            })),
            s("should have an adapter"),
        ),
        // Fused models inside a workspace.
        (
            "fusion d_model 2^30",
            import(with_fusion(|m| m["d_model"] = (1u64 << 30).into())),
            s("d_model is 1073741824, but the running model's vectors have 384 dimensions"),
        ),
        (
            "fusion 0 heads",
            import(with_fusion(|m| m["heads"] = 0.into())),
            s("heads is 0"),
        ),
        (
            "fusion a million labels",
            import(with_fusion(|m| {
                m["tasks"][0]["labels"] = (0..1_000_000)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .into();
            })),
            s("task \"peft\": it lists 1000000 labels"),
        ),
        (
            "fusion own adapter out of range",
            import(with_fusion(|m| m["tasks"][0]["own"] = 5.into())),
            s("names adapter 5 as its own, but there are 1"),
        ),
        (
            "fusion 40 adapters",
            import(with_fusion(|m| {
                let a = m["adapters"][0].clone();
                m["adapters"] = serde_json::Value::Array(vec![a; 40]);
            })),
            s("lists 40 adapters"),
        ),
        (
            "fusion weights garbage",
            import(with_fusion(|_| {})),
            s("fusion.safetensors is not a safetensors file"),
        ),
    ]
}

#[test]
fn every_hostile_file_is_refused_by_name_and_changes_nothing() {
    let h = Recorder::default();
    let mut s = Session::new(common::engine());
    // A workspace with something to lose: a task with data and an imported PEFT adapter.
    block_on(s.handle(
        Request::AddTask {
            name: "sentiment".into(),
        },
        &h,
    ));
    block_on(s.handle(
        upload(
            common::read(&common::fixture("data/e2e_sentiment.csv")),
            "e2e_sentiment.csv",
        ),
        &h,
    ));
    block_on(s.handle(import(zip(&peft_files())), &h));
    let setup: Vec<Event> = h.0.take();
    assert!(
        !setup.iter().any(|e| matches!(e, Event::Error { .. })),
        "{setup:?}"
    );
    let before = s.workspace();
    assert_eq!(before.tasks.len(), 2);
    assert!(before.tasks[1].adapter.is_some());

    let cases = corpus();
    let n = cases.len();
    let mut failures = Vec::new();
    for (name, req, want) in cases {
        let file = match &req {
            Request::Upload { file_name, .. } | Request::Import { file_name, .. } => {
                file_name.clone()
            }
            _ => String::new(),
        };
        block_on(s.handle(req, &h));
        let events: Vec<Event> = h.0.take();
        let errors: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Error { context, message } => Some(format!("{context}: {message}")),
                _ => None,
            })
            .collect();
        let saved = events.iter().any(|e| matches!(e, Event::Persist { .. }));
        println!("{name:40} -> {}", errors.join(" | "));
        if errors.len() != 1 || !errors[0].contains(&want) {
            failures.push(format!(
                "{name}: wanted one error containing {want:?}, got {errors:?}"
            ));
        } else if !errors[0].contains(&format!("{file}: ")) {
            failures.push(format!(
                "{name}: the error does not name the file {file:?}: {errors:?}"
            ));
        }
        if saved {
            failures.push(format!("{name}: the workspace was saved"));
        }
        if s.workspace() != before {
            failures.push(format!("{name}: the workspace changed"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        n,
        failures.join("\n")
    );
    println!("{n} hostile files: each refused with its message, workspace unchanged");
}

/// Structure-aware mutation fuzzing through the same session: valid files (an adapter zip, a
/// workspace with a fusion manifest, CSV uploads) with one file inside mutated at random — bytes
/// flipped, cut, duplicated, spliced from the other files — and re-zipped, so the mutation gets
/// past the zip's checksums into the format readers. Every run must end in a result or one error
/// event, never a panic, and a refused file must leave the workspace as it was.
#[test]
fn mutated_files_never_panic_or_change_the_workspace() {
    const ROUNDS: usize = 1500;
    let h = Recorder::default();
    let mut s = Session::new(common::engine());
    block_on(s.handle(
        Request::AddTask {
            name: "sentiment".into(),
        },
        &h,
    ));
    let csv = common::read(&common::fixture("data/e2e_sentiment.csv"));
    block_on(s.handle(upload(csv.clone(), "e2e_sentiment.csv"), &h));
    h.0.take();

    let adapter = peft_files();
    let ws = workspace(
        |m| m["has_fusion"] = true.into(),
        &[
            ("fusion/fusion_manifest.json", fusion_manifest(|_| {})),
            (
                "fusion/fusion.safetensors",
                peft_files()["adapter_model.safetensors"].clone(),
            ),
        ],
    );
    let plain = workspace(|_| {}, &[]);
    let seeds: Vec<BTreeMap<String, Vec<u8>>> = vec![adapter, plain, ws];
    let excel = common::read(&common::fixture("data/e2e_excel_semicolon.csv"));
    let uploads = [csv, excel];

    let mut rng = lorafuse::data::rng::SplitMix64::new(7);
    let mut next = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let (mut refused, mut accepted) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let before = s.workspace();
        let req = if round % 3 == 2 {
            let mut bytes = uploads[round % 2].clone();
            mutate(&mut bytes, &mut next, &uploads[(round + 1) % 2]);
            upload(bytes, if round % 5 == 0 { "f.jsonl" } else { "f.csv" })
        } else {
            // Adapters, and workspaces with and without a fusion manifest.
            let files = &seeds[if round % 3 == 0 { 0 } else { 1 + round % 2 }];
            let mut files = files.clone();
            let names: Vec<String> = files.keys().cloned().collect();
            let victim = &names[next(names.len())];
            let donor = files[&names[next(names.len())]].clone();
            let bytes = files.get_mut(victim).unwrap();
            mutate(bytes, &mut next, &donor);
            let mut z = zip(&files);
            if round % 11 == 0 {
                // Now and then the zip itself is damaged.
                mutate(&mut z, &mut next, &[]);
            }
            import(z)
        };
        block_on(s.handle(req, &h));
        let events: Vec<Event> = h.0.take();
        let errors = events
            .iter()
            .filter(|e| matches!(e, Event::Error { .. }))
            .count();
        assert!(errors <= 1, "round {round}: {errors} errors");
        if errors == 1 {
            refused += 1;
            assert!(
                s.workspace() == before,
                "round {round}: a refused file changed the workspace"
            );
        } else {
            accepted += 1;
        }
        // An accepted import replaces the workspace; keep the task the uploads go to.
        if s.workspace().tasks.iter().all(|t| t.name != "sentiment") {
            block_on(s.handle(
                Request::AddTask {
                    name: "sentiment".into(),
                },
                &h,
            ));
            h.0.take();
        }
    }
    println!(
        "{ROUNDS} mutated files: {refused} refused with one error, {accepted} accepted, 0 panics"
    );
    assert!(
        refused > ROUNDS / 4 && accepted > 0,
        "{refused} refused, {accepted} accepted"
    );
}

/// One random mutation of `bytes`: flip bits, cut, repeat a span, splice in part of `donor`,
/// overwrite with a boundary number, or several of these.
fn mutate(bytes: &mut Vec<u8>, next: &mut impl FnMut(usize) -> usize, donor: &[u8]) {
    for _ in 0..1 + next(3) {
        let n = bytes.len();
        match next(6) {
            0 if n > 0 => {
                for _ in 0..1 + next(8) {
                    let i = next(n);
                    bytes[i] ^= 1 << next(8);
                }
            }
            1 if n > 0 => bytes.truncate(next(n)),
            2 if n > 0 => {
                let (a, len) = (next(n), 1 + next(64));
                let span: Vec<u8> = bytes[a..(a + len).min(n)].to_vec();
                let at = next(n);
                bytes.splice(at..at, span);
            }
            3 if !donor.is_empty() => {
                let (a, len) = (next(donor.len()), 1 + next(256));
                let span = &donor[a..(a + len).min(donor.len())];
                let at = next(n + 1);
                bytes.splice(at..at, span.iter().copied());
            }
            4 if n > 0 => {
                // Numbers that break size arithmetic, written over a random spot.
                let v: u64 = [0, 1, u64::MAX, u32::MAX as u64, 1 << 31, 1 << 40][next(6)];
                let at = next(n);
                for (k, b) in v.to_le_bytes().iter().enumerate() {
                    if at + k < n {
                        bytes[at + k] = *b;
                    }
                }
            }
            _ => {
                // A digit string in JSON replaced by a huge or negative one.
                if let Some(at) = bytes.iter().position(|b| b.is_ascii_digit()) {
                    let big: &[u8] = [&b"99999999999"[..], b"-1", b"1e308", b"0"][next(4)];
                    bytes.splice(at..at + 1, big.iter().copied());
                }
            }
        }
    }
}
