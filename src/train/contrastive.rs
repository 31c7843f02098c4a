//! Stage 1's contrastive objective (SetFit: Tunstall et al. 2022, "Efficient Few-Shot Learning
//! Without Prompts"), trained through the task's LoRA adapter instead of the whole encoder.
//!
//! Pairs of training texts are drawn once, seeded ([`pairs`]): for each row, half of
//! [`TrainConfig::pairs_per_example`] with a row of the same label (target cosine similarity 1)
//! and half with a row of another label (target 0). Each [`ContrastiveTrainer::step`] takes one
//! batch of pairs, encodes the distinct rows it names through the adapter (mean-pooled, encoder
//! dropout as in stage 1), and minimises the squared error between each pair's cosine similarity
//! and its target (sentence-transformers' `CosineSimilarityLoss`), sharded like stage 1's step
//! ([`super::shards`]). One pass over the pairs, at [`TrainConfig::contrastive_lr`] with the
//! usual warm-up and decay. The classifier head is fitted afterwards on the adapter's vectors
//! (`experiment::stage1`), as SetFit fits its logistic regression.
//!
//! What it leaves out: SetFit's end-to-end phase (head and body trained together afterwards) and
//! its other losses (triplet, batch-hard); the head is never trained through the adapter here.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::plan::BatchPlan;
use super::schedule::TrainConfig;
use super::{Progress, shards};
use crate::error::{Error, Result};
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::tokenizer::Tokens;
use crate::model::{Encoder, ForwardMode, TextTokenizer};

/// One training pair: two row indices and the cosine similarity their vectors should have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// First row.
    pub a: usize,
    /// Second row.
    pub b: usize,
    /// 1 for the same label, 0 for different labels.
    pub target: f32,
}

/// Most pairs a run draws, whatever the data size: 40 pairs per row up to 40 rows, fewer per row
/// above, so the pass stays near 3,200 encoded texts (about 80 s on two threads in the page for
/// short texts).
pub const MAX_PAIRS: usize = 1600;

/// `per_row` pairs for every row of `labels` (at most [`MAX_PAIRS`] in all), seeded with `seed`:
/// the even ones with another row of the same label where there is one (the row itself where its
/// class has no other), the odd ones with a row of another label. Past `MAX_PAIRS / 2` rows, a
/// seeded sample of that many rows anchors the pairs (two each, one of either kind), so the cap
/// holds and both kinds stay. Needs at least two classes present for the negatives; a row whose
/// label is the only one present gets positives only.
pub fn pairs(labels: &[usize], per_row: usize, seed: u64) -> Vec<Pair> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0de_5e7f);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let n = labels.len();
    let mut anchors: Vec<usize> = (0..n).collect();
    if n > MAX_PAIRS / 2 {
        anchors.shuffle(&mut rng);
        anchors.truncate(MAX_PAIRS / 2);
    }
    let per_row = per_row.min(MAX_PAIRS / anchors.len().max(1)).max(1);
    let mut out = Vec::with_capacity(anchors.len() * per_row);
    for round in 0..per_row {
        for &a in &anchors {
            let l = labels[a];
            let same = &by_class[l];
            let others = n - same.len();
            let b = if round % 2 == 0 || others == 0 {
                let b = *same.choose(&mut rng).unwrap_or(&a);
                if b == a && same.len() > 1 {
                    // Another row of the class: draw among the rest.
                    let k = same.iter().position(|&x| x == a).unwrap_or(0);
                    same[(k + rng.random_range(1..same.len())) % same.len()]
                } else {
                    b
                }
            } else {
                // A uniform row outside the class: the k-th row whose label differs.
                let k = rng.random_range(0..others);
                (0..n).filter(|&j| labels[j] != l).nth(k).unwrap_or(a)
            };
            let target = if labels[b] == l { 1.0 } else { 0.0 };
            out.push(Pair { a, b, target });
        }
    }
    out
}

/// The contrastive stage of one task's adapter, advanced one batch of pairs per
/// [`step`](ContrastiveTrainer::step).
pub struct ContrastiveTrainer {
    adapter: LoraAdapter,
    encoder: Encoder,
    tokenizer: TextTokenizer,
    device: Device,
    opt: ModuleOptimizer,
    tokens: Vec<Tokens>,
    pairs: Vec<Pair>,
    plan: BatchPlan,
    cfg: TrainConfig,
}

impl ContrastiveTrainer {
    /// Prepares a run over `texts` with class indices `labels`: tokenises them, draws the pairs
    /// and initialises the adapter (A random, B zero).
    pub fn new(
        encoder: &Encoder,
        tokenizer: &TextTokenizer,
        texts: &[String],
        labels: &[usize],
        lora: &LoraConfig,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        if texts.len() < 2 || texts.len() != labels.len() {
            return Err(Error::Train(
                "the contrastive objective needs at least two training examples".into(),
            ));
        }
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        let adapter = LoraAdapter::init(lora, &encoder.config, cfg.seed, &ad)?;
        let tokens = texts
            .iter()
            .map(|t| tokenizer.encode(t))
            .collect::<Result<Vec<_>>>()?;
        let pairs = pairs(labels, cfg.pairs_per_example, cfg.seed);
        // One pass over the pairs (SetFit's one epoch), with the run's warm-up and decay.
        let plan_cfg = TrainConfig {
            epochs: 1,
            min_steps: 0,
            ..cfg.clone()
        };
        Ok(Self {
            adapter,
            encoder: encoder.clone(),
            tokenizer: tokenizer.clone(),
            device: device.clone(),
            opt: cfg.optimizer(),
            tokens,
            plan: BatchPlan::new(pairs.len(), &plan_cfg),
            pairs,
            cfg: cfg.clone(),
        })
    }

    /// Starts from `adapter` (its own LoRA settings) instead of a fresh one.
    pub async fn starting_from(mut self, adapter: &LoraAdapter) -> Result<Self> {
        let ad = self.device.clone().autodiff();
        self.adapter =
            crate::lora::peft::trainable_copy(adapter, &self.encoder.config, &ad).await?;
        Ok(self)
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> usize {
        self.plan.total()
    }

    /// Steps in one pass over the pairs.
    pub(crate) fn plan_steps_per_epoch(&self) -> usize {
        self.plan.steps_per_epoch()
    }

    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.plan.steps_done()
    }

    /// Runs one batch of pairs; `Ok(None)` once all steps are done.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        let Some((idx, epoch)) = self.plan.next_batch() else {
            return Ok(None);
        };
        let n = idx.len();
        let ad = self.device.clone().autodiff();
        let step = self.plan.steps_done();
        let len = |p: usize| {
            let p = self.pairs[p];
            self.tokens[p.a].ids.len().max(self.tokens[p.b].ids.len())
        };
        let (loss, grads) = shards::run(&idx, len, self.cfg.seed, step, |pairs| {
            self.shard(pairs, n, &ad)
        })
        .await?;
        let mut acc = GradientsAccumulator::<LoraAdapter>::new();
        for g in grads {
            acc.accumulate(&self.adapter, g);
        }
        let lr = self.plan.lr(self.cfg.contrastive_lr);
        self.adapter = self.opt.step(lr, self.adapter.clone(), acc.grads());
        Ok(Some(self.plan.done(n, epoch, loss, lr)))
    }

    /// One shard's forward and backward over its pairs: the squared errors of their cosine
    /// similarities summed and divided by the batch's pair count `batch`, and the adapter's
    /// gradients.
    fn shard(&self, pairs: &[usize], batch: usize, ad: &Device) -> (Tensor<1>, GradientsParams) {
        let adapter = self.adapter.clone().fork(ad);
        // The distinct rows of the shard's pairs, each encoded once.
        let mut rows: Vec<usize> = pairs
            .iter()
            .flat_map(|&p| [self.pairs[p].a, self.pairs[p].b])
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let at = |r: usize| rows.binary_search(&r).unwrap_or(0) as i64;
        let tokens: Vec<Tokens> = rows.iter().map(|&r| self.tokens[r].clone()).collect();
        let input = self.tokenizer.pad(&tokens);
        let mode = ForwardMode::train(Some(&adapter), self.cfg.encoder_dropout);
        let pooled = self
            .encoder
            .pooled(&input, Some(&adapter), &mode, &self.device);
        let m = pairs.len();
        let index = |f: &dyn Fn(&Pair) -> usize| {
            let ids: Vec<i64> = pairs.iter().map(|&p| at(f(&self.pairs[p]))).collect();
            Tensor::<1, Int>::from_data(TensorData::new(ids, [m]), &self.device)
        };
        let u = pooled.clone().select(0, index(&|p| p.a));
        let v = pooled.select(0, index(&|p| p.b));
        let targets: Vec<f32> = pairs.iter().map(|&p| self.pairs[p].target).collect();
        let targets = Tensor::<1>::from_data(TensorData::new(targets, [m]), &self.device);
        let loss = (cosine(u, v) - targets)
            .powf_scalar(2.0)
            .sum()
            .div_scalar(batch as f64);
        let mut grads = loss.backward();
        let g = GradientsParams::from_module(&mut grads, &adapter);
        (loss.detach(), g)
    }

    /// Ends the run (finished or cancelled) and returns the adapter for inference.
    pub fn finish(self) -> LoraAdapter {
        self.adapter.valid()
    }
}

/// Row-wise cosine similarity.
///
/// # Shapes
/// - u, v: `[n, d]` → `[n]`
pub fn cosine(u: Tensor<2>, v: Tensor<2>) -> Tensor<1> {
    let dot = (u.clone() * v.clone()).sum_dim(1);
    let norms = (u.clone() * u).sum_dim(1).sqrt() * (v.clone() * v).sum_dim(1).sqrt();
    (dot / norms.clamp_min(1e-8)).flatten(0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_alternate_same_and_different_labels_and_are_seeded() {
        let labels = [0, 0, 0, 1, 1, 2];
        let p = pairs(&labels, 4, 7);
        assert_eq!(p.len(), 6 * 4);
        for (k, q) in p.iter().enumerate() {
            let same = labels[q.a] == labels[q.b];
            assert_eq!(q.target, if same { 1.0 } else { 0.0 });
            let round = k / labels.len();
            if round % 2 == 1 {
                assert!(!same, "odd rounds pair with another label: {q:?}");
            } else if labels.iter().filter(|&&l| l == labels[q.a]).count() > 1 {
                assert!(same && q.a != q.b, "another row of the class: {q:?}");
            } else {
                assert_eq!(q.a, q.b, "a class of one row pairs with itself");
            }
        }
        assert_eq!(p, pairs(&labels, 4, 7));
        assert_ne!(p, pairs(&labels, 4, 8));
    }

    #[test]
    fn the_pair_count_is_capped() {
        let labels: Vec<usize> = (0..1000).map(|i| i % 2).collect();
        assert!(pairs(&labels, 40, 1).len() <= MAX_PAIRS);
        assert_eq!(pairs(&labels[..10], 40, 1).len(), 400);
        // More rows than the cap allows two pairs each: a sample anchors one of either kind.
        let many: Vec<usize> = (0..5000).map(|i| i % 3).collect();
        let p = pairs(&many, 40, 1);
        assert_eq!(p.len(), MAX_PAIRS);
        let same = p.iter().filter(|q| q.target == 1.0).count();
        assert_eq!(same, MAX_PAIRS / 2, "as many positives as negatives");
    }

    #[test]
    fn cosine_of_parallel_orthogonal_and_opposite_rows() {
        let dev = crate::backend::cpu_device(crate::backend::DEFAULT_CPU).unwrap();
        let rows = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [3, 2]), &dev);
        let u = rows(vec![1.0, 0.0, 1.0, 0.0, 2.0, 2.0]);
        let v = rows(vec![3.0, 0.0, 0.0, 5.0, -1.0, -1.0]);
        let c = crate::host::block_on(crate::host::floats(cosine(u, v))).unwrap();
        for (got, want) in c.iter().zip([1.0f32, 0.0, -1.0]) {
            assert!((got - want).abs() < 1e-6, "{c:?}");
        }
    }
}
