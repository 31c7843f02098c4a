//! `bench-transfer`'s stage 1: the source adapters, trained once; and for one target, seed and N the own LoRA and sequential transfer
//! from a source, and the vectors of the train, dev and test rows over every source adapter and the
//! own one, and the cross-validated gate's fold models; kept under `--cache` and read back from
//! there when the same setting comes again.

use anyhow::{Context, Result};
use burn::tensor::Tensor;

use lorafuse::data::{self, Example};
use lorafuse::engine::Engine;
use lorafuse::experiment::gate::{cv_fold_count, cv_fold_models};
use lorafuse::experiment::stage1::{Start, run_stage1_from};
use lorafuse::experiment::start::{Source as StartSource, check_start};
use lorafuse::experiment::{Labelled, PreparedTask};
use lorafuse::host::block_on;
use lorafuse::infer::pooled_vectors;
use lorafuse::lora::LoraAdapter;
use lorafuse::train::stage2::FusionCache;
use lorafuse::train::{TaskModel, TrainConfig};
use lorafuse::workspace::task_files::StartCheck;

use super::{RunCtx, Source, TransferArgs};
use crate::io::Bars;

/// What stage 1 gives one target, seed and N: the own LoRA as the product trains it (from where
/// the automatic start chose), the fresh one where that differs, the sequential LoRA, and the
/// vectors.
pub(super) struct Stage1 {
    /// The own LoRA from the automatic start ([`check_start`]): the fused one.
    pub(super) own: TaskModel,
    /// The automatic start's record.
    pub(super) start: StartCheck,
    /// The own LoRA from a fresh adapter, where the automatic start chose a source.
    pub(super) fresh: Option<TaskModel>,
    pub(super) seq: TaskModel,
    /// Train, dev and test rows over the sources' adapters and the own one (last).
    pub(super) train: FusionCache,
    pub(super) dev: FusionCache,
    pub(super) test: FusionCache,
    /// `[test rows, d]`: the own, fresh (where trained) and sequential adapters' test vectors.
    pub(super) own_test: Tensor<2>,
    pub(super) fresh_test: Option<Tensor<2>>,
    pub(super) seq_test: Tensor<2>,
    pub(super) own_seconds: f64,
    pub(super) seq_seconds: f64,
    /// Where this setting is kept (`--cache`).
    pub(super) dir: Option<std::path::PathBuf>,
}

impl RunCtx<'_> {
    /// The sources as the automatic start sees them.
    pub(super) fn start_sources(&self) -> Vec<StartSource<'_>> {
        self.srcs
            .iter()
            .map(|s| StartSource {
                task: &s.name,
                adapter: &s.model.adapter,
                sha256: "",
            })
            .collect()
    }

    /// Stage 1 of the target (the automatic start's own LoRA, a fresh one where it differs,
    /// sequential transfer) and its caches; from `--cache` when kept there for exactly this
    /// setting.
    pub(super) fn stage1(
        &self,
        task: &PreparedTask,
        test: &Labelled,
        lora: &lorafuse::lora::LoraConfig,
        cfg: &TrainConfig,
    ) -> Result<Stage1> {
        let e = self.engine;
        let (target, n, seed) = (self.target, self.n, self.seed);
        let key = (
            "transfer-target/2",
            lorafuse::train::stage1::STEP_VERSION,
            target,
            n,
            seed,
            &self.a.sources,
            &self.a.data_dir,
            &self.a.targets,
            self.a.test_per_task,
            self.a.source_epochs,
            self.a.source_seed,
            self.seq_idx,
            lora,
            cfg,
            self.a.training.holdout(),
        );
        let dir = match &self.a.cache {
            Some(root) => Some(crate::snapshot::folder(
                root,
                &format!("{target}-n{n}-seed{seed}"),
                &key,
            )?),
            None => None,
        };
        if let Some(d) = &dir
            && let (Some(own), Some(seq)) = (
                crate::snapshot::load_model(&d.join("own"), e, cfg.head_dropout)?,
                crate::snapshot::load_model(&d.join("seq"), e, cfg.head_dropout)?,
            )
            && let Some(c) = crate::snapshot::load_caches(
                &d.join("caches.safetensors"),
                &["train", "dev", "test", "seq", "fresh"],
                e,
            )?
            && let Ok(times) = std::fs::read_to_string(d.join("times.json"))
            && let Ok(start) = std::fs::read_to_string(d.join("start.json"))
        {
            let t: (f64, f64) = serde_json::from_str(&times)?;
            let start: StartCheck = serde_json::from_str(&start)?;
            let fresh = crate::snapshot::load_model(&d.join("fresh"), e, cfg.head_dropout)?;
            let [train, dev, test, seq_c, fresh_c]: [FusionCache; 5] =
                c.try_into().map_err(|_| anyhow::anyhow!("5 caches"))?;
            let [m, k, dd] = test.adapters.dims();
            let own_test = test
                .adapters
                .clone()
                .slice([0..m, k - 1..k, 0..dd])
                .reshape([m, dd]);
            return Ok(Stage1 {
                own,
                start,
                fresh_test: fresh.as_ref().map(|_| fresh_c.base),
                fresh,
                seq,
                train,
                dev,
                test,
                own_test,
                seq_test: seq_c.base,
                own_seconds: t.0,
                seq_seconds: t.1,
                dir: dir.clone(),
            });
        }
        let tag = format!("{target} N={n} seed {seed}");
        // A trained model and its seconds.
        let train_from = |start: Start, what: &str| -> Result<(TaskModel, f64)> {
            let mut bars = Bars::new(&format!("{tag} {what}"));
            let r = block_on(run_stage1_from(e, task, start, cfg, false, &mut bars))?;
            bars.finish();
            Ok((r.model, r.seconds))
        };
        // The product's start: another task's adapter where it reads the rows clearly better than
        // the base (lorafuse::experiment::start), else fresh.
        let classes = task.vocab.len();
        let sources = self.start_sources();
        let start = block_on(check_start(e, &task.train, classes, &sources, cfg))?;
        let chosen = start
            .from
            .as_deref()
            .and_then(|f| self.srcs.iter().position(|s| s.name == f));
        let seq_src = &self.srcs[self.seq_idx];
        let (own, fresh, seq) = match chosen {
            None => {
                let own = train_from(Start::Fresh(lora), "lora")?;
                let seq = train_from(Start::From(&seq_src.model.adapter), "lora-seq")?;
                (own, None, seq)
            }
            Some(c) => {
                let own = train_from(Start::From(&self.srcs[c].model.adapter), "lora (auto)")?;
                let fresh = train_from(Start::Fresh(lora), "lora-fresh")?;
                // The same start and settings train the same adapter: sequential transfer from
                // the chosen source is the own LoRA.
                let seq = match c == self.seq_idx {
                    true => own.clone(),
                    false => train_from(Start::From(&seq_src.model.adapter), "lora-seq")?,
                };
                (own, Some(fresh), seq)
            }
        };
        // Vectors: sources then the own adapter (position S).
        let mut adapters: Vec<&LoraAdapter> = self.srcs.iter().map(|s| &s.model.adapter).collect();
        adapters.push(&own.0.adapter);
        let build = |texts: &[String]| {
            block_on(FusionCache::build(
                &e.encoder,
                &e.tokenizer,
                &adapters,
                texts,
                &e.device,
            ))
        };
        let train = build(&task.train.texts)?;
        let dev = build(&task.held_out.texts)?;
        let pooled = |a: &LoraAdapter| {
            block_on(pooled_vectors(
                &e.encoder,
                &e.tokenizer,
                Some(a),
                &test.texts,
                &e.device,
            ))
        };
        let own_test = pooled(&own.0.adapter)?;
        let seq_test = pooled(&seq.0.adapter)?;
        let fresh_test = match &fresh {
            Some(f) => Some(pooled(&f.0.adapter)?),
            None => None,
        };
        let test_c = FusionCache {
            base: self.test_src.base.clone(),
            adapters: Tensor::cat(
                vec![
                    self.test_src.adapters.clone(),
                    own_test.clone().unsqueeze_dim(1),
                ],
                1,
            ),
        };
        if let Some(d) = &dir {
            crate::snapshot::save_model(&d.join("own"), &own.0)?;
            crate::snapshot::save_model(&d.join("seq"), &seq.0)?;
            if let Some(f) = &fresh {
                crate::snapshot::save_model(&d.join("fresh"), &f.0)?;
            }
            let one = |t: &Tensor<2>| FusionCache {
                base: t.clone(),
                adapters: t.clone().unsqueeze_dim(1),
            };
            let (seq_c, fresh_c) = (
                one(&seq_test),
                one(fresh_test.as_ref().unwrap_or(&seq_test)),
            );
            let named = [
                ("train", &train),
                ("dev", &dev),
                ("test", &test_c),
                ("seq", &seq_c),
                ("fresh", &fresh_c),
            ];
            crate::snapshot::save_caches(&d.join("caches.safetensors"), &named)?;
            std::fs::write(d.join("start.json"), serde_json::to_string(&start)?)?;
            std::fs::write(
                d.join("times.json"),
                serde_json::to_string(&(own.1, seq.1))?,
            )?;
        }
        Ok(Stage1 {
            own: own.0,
            start,
            fresh: fresh.map(|f| f.0),
            fresh_test,
            seq: seq.0,
            train,
            dev,
            test: test_c,
            own_test,
            seq_test,
            own_seconds: own.1,
            seq_seconds: seq.1,
            dir,
        })
    }

    /// The cross-validated gate's `k` fold models of the target's training rows
    /// ([`cv_fold_models`]), kept in `kept` (the setting's `--cache` folder, [`Stage1::dir`]) as
    /// `folds-k{k}/fold{f}` with `complete.json` (the training seconds) and read back from there;
    /// with the seconds they took to train (as recorded, when read back).
    pub(super) fn cv_fold_models(
        &self,
        kept: Option<&std::path::Path>,
        task: &PreparedTask,
        start: Start<'_>,
        cfg: &TrainConfig,
        k: usize,
    ) -> Result<(Vec<(usize, TaskModel)>, f64)> {
        let e = self.engine;
        let dir = kept.map(|d| d.join(format!("folds-k{k}")));
        let count = cv_fold_count(task.train.len(), k);
        if let Some(d) = &dir
            && let Ok(done) = std::fs::read_to_string(d.join("complete.json"))
        {
            let (_, secs): (usize, f64) = serde_json::from_str(&done)?;
            let mut models = Vec::new();
            for f in 0..count {
                let fd = d.join(format!("fold{f}"));
                if fd.exists() {
                    let m = crate::snapshot::load_model(&fd, e, cfg.head_dropout)?
                        .with_context(|| format!("{} is incomplete", fd.display()))?;
                    models.push((f, m));
                }
            }
            return Ok((models, secs));
        }
        let t0 = std::time::Instant::now();
        let classes = task.vocab.len();
        let models = block_on(cv_fold_models(
            e,
            &task.train,
            classes,
            start,
            cfg,
            k,
            &mut (),
        ))?
        .context("the fold models' training stopped")?;
        let secs = t0.elapsed().as_secs_f64();
        if let Some(d) = &dir {
            for (f, m) in &models {
                crate::snapshot::save_model(&d.join(format!("fold{f}")), m)?;
            }
            let done = serde_json::to_string(&(count, secs))?;
            std::fs::write(d.join("complete.json"), done)?;
        }
        Ok((models, secs))
    }
}

/// Trains (or loads from `--cache`) every source adapter once.
pub(super) fn train_sources(
    engine: &Engine,
    a: &TransferArgs,
    sources: &[(String, usize)],
    train_of: &dyn Fn(&str) -> Result<Vec<Example>>,
    lora: &lorafuse::lora::LoraConfig,
) -> Result<Vec<Source>> {
    let cfg = TrainConfig {
        epochs: a.source_epochs,
        ..a.training.train(a.source_seed)
    };
    let mut out = Vec::new();
    for (name, n) in sources {
        let train = train_of(name)?;
        let subset = data::stratified_subset(&train, *n, a.source_seed);
        let task = PreparedTask::new(&subset, &[], &a.training.holdout(), a.source_seed)
            .with_context(|| format!("source {name}"))?;
        let labels = task.vocab.names().to_vec();
        let key = (
            "transfer-source/1",
            lorafuse::train::stage1::STEP_VERSION,
            name,
            n,
            task.train.len(),
            &a.data_dir,
            &a.targets,
            a.test_per_task,
            lora,
            &cfg,
        );
        let dir = match &a.cache {
            Some(root) => Some(crate::snapshot::folder(root, name, &key)?),
            None => None,
        };
        if let Some(d) = &dir
            && let Some(model) = crate::snapshot::load_model(d, engine, cfg.head_dropout)?
        {
            eprintln!("source {name}: adapter from {}", d.display());
            out.push(Source {
                name: name.clone(),
                model,
                labels,
            });
            continue;
        }
        let mut bars = Bars::new(&format!("source {name}"));
        let run = block_on(lorafuse::experiment::run_stage1(
            engine, &task, lora, &cfg, false, &mut bars,
        ))?;
        bars.finish();
        eprintln!(
            "source {name}: {} rows, {:.1} s",
            task.train.len(),
            run.seconds
        );
        if let Some(d) = &dir {
            crate::snapshot::save_model(d, &run.model)?;
        }
        out.push(Source {
            name: name.clone(),
            model: run.model,
            labels,
        });
    }
    Ok(out)
}
