//! Optimiser settings shared by the training loops, and the learning-rate schedule
//! (linear warm-up to the peak, then linear decay to zero, as HF's `get_linear_schedule_with_warmup`).

use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of one training run. Defaults were chosen on a dev split (see README, "Defaults").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training data (default 8).
    pub epochs: usize,
    /// Examples per step (default 16).
    pub batch_size: usize,
    /// Peak learning rate of the LoRA matrices (default 5e-4).
    pub lr: f64,
    /// Peak learning rate of the freshly initialised head (default 3e-3).
    pub head_lr: f64,
    /// AdamW decoupled weight decay (default 0.01).
    pub weight_decay: f64,
    /// Fraction of steps spent warming up (default 0.1).
    pub warmup_ratio: f64,
    /// Dropout before the head in training (default 0.1).
    pub head_dropout: f64,
    /// Keep the encoder's own dropout (0.1) active while training an adapter (default true).
    pub encoder_dropout: bool,
    /// Clip the gradient's global norm (default 1.0; 0 disables).
    pub max_grad_norm: f64,
    /// Seed of initialisation, shuffling and dropout (default 1).
    pub seed: u64,
    /// Fewest optimizer steps of a stage-1 or probe run (default [`MIN_STEPS`]): a task whose
    /// epochs would give fewer gets more epochs ([`TrainConfig::scaled_to`], applied by
    /// `experiment::stage1` and the probe; a trainer itself runs `epochs`), so 16 rows are not 8
    /// steps.
    pub min_steps: usize,
    /// How stage 1's head starts (default [`HeadInit::Random`]).
    pub head_init: HeadInit,
    /// What stage 1 optimises (default [`Objective::Auto`]).
    pub objective: Objective,
    /// Peak learning rate of the adapter under the contrastive objective (default 1e-3).
    pub contrastive_lr: f64,
    /// Pairs drawn per training row for the contrastive objective, half of the same label and
    /// half of another (default 40: SetFit's 20 iterations of one pair of each kind; at most
    /// `contrastive::MAX_PAIRS` in all).
    pub pairs_per_example: usize,
}

/// Fewest optimizer steps of a stage-1 run, chosen by measurement (docs/results.md, "Few rows").
/// Runs of 500 rows or more at the default 8 epochs of 16 already take more, so it changes only
/// small tasks.
pub const MIN_STEPS: usize = 120;

/// Where stage 1's classifier head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// The frozen probe's solution: a head fitted on the starting adapter's vectors before the
    /// adapter trains (linear probing, then fine-tuning: LP-FT, Kumar et al. 2022, "Fine-Tuning
    /// can Distort Pretrained Features"), so fine-tuning starts where the probe ends. Not the
    /// default: measured no better at 16 rows and 3.3 points worse at 200 (docs/results.md,
    /// "Few rows").
    Probe,
    /// PyTorch's `nn.Linear` initialisation.
    #[default]
    Random,
}

/// What stage 1 optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// [`Objective::Contrastive`] for a task with at most [`CONTRASTIVE_MAX_PER_CLASS`] rows per
    /// class on average, [`Objective::Classify`] otherwise ([`TrainConfig::objective_for`]).
    #[default]
    Auto,
    /// Cross-entropy of the head's logits through the adapter.
    Classify,
    /// SetFit's objective (Tunstall et al. 2022): the adapter learns to give texts of the same
    /// label cosine similarity 1 and of different labels 0, then a head is fitted on its vectors.
    Contrastive,
}

/// Rows per class up to which [`Objective::Auto`] trains contrastively (docs/results.md, "Few rows").
pub const CONTRASTIVE_MAX_PER_CLASS: usize = 32;

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 16,
            lr: 5e-4,
            head_lr: 3e-3,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            head_dropout: 0.1,
            encoder_dropout: true,
            max_grad_norm: 1.0,
            seed: 1,
            min_steps: MIN_STEPS,
            head_init: HeadInit::Random,
            objective: Objective::Auto,
            contrastive_lr: 1e-3,
            pairs_per_example: 40,
        }
    }
}

impl TrainConfig {
    /// Epochs a run over `n` rows trains: [`TrainConfig::epochs`], or more when those would give
    /// fewer than [`TrainConfig::min_steps`] steps (whole epochs, so every row is seen equally).
    pub fn epochs_for(&self, n: usize) -> usize {
        let per_epoch = n.div_ceil(self.batch_size.max(1)).max(1);
        self.epochs.max(self.min_steps.div_ceil(per_epoch))
    }

    /// These settings for a run over `n` rows: [`TrainConfig::epochs_for`] `n` epochs.
    pub fn scaled_to(&self, n: usize) -> Self {
        Self {
            epochs: self.epochs_for(n),
            ..self.clone()
        }
    }

    /// The objective a task of `n` training rows in `classes` classes trains with.
    pub fn objective_for(&self, n: usize, classes: usize) -> Objective {
        match self.objective {
            Objective::Auto if n <= CONTRASTIVE_MAX_PER_CLASS * classes.max(1) => {
                Objective::Contrastive
            }
            Objective::Auto => Objective::Classify,
            o => o,
        }
    }

    /// Epochs a stage-1 run over `n` rows of `classes` classes records: one pass over the pairs
    /// for the contrastive objective, [`TrainConfig::epochs_for`] otherwise.
    pub fn stage1_epochs(&self, n: usize, classes: usize) -> usize {
        match self.objective_for(n, classes) {
            Objective::Contrastive => 1,
            _ => self.epochs_for(n),
        }
    }

    /// Checks the settings; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Train(m));
        if self.epochs == 0 || self.epochs > 1000 {
            return bad(format!("epochs must be in 1..=1000, got {}", self.epochs));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return bad(format!(
                "batch size must be in 1..=4096, got {}",
                self.batch_size
            ));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("head lr", self.head_lr),
            ("contrastive lr", self.contrastive_lr),
        ] {
            if !v.is_finite() || v <= 0.0 || v > 1.0 {
                return bad(format!("{name} must be in (0, 1], got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(format!(
                "warm-up ratio must be in [0, 1), got {}",
                self.warmup_ratio
            ));
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return bad(format!(
                "head dropout must be in [0, 1), got {}",
                self.head_dropout
            ));
        }
        if self.min_steps > 100_000 {
            return bad(format!(
                "minimum steps must be at most 100000, got {}",
                self.min_steps
            ));
        }
        if self.pairs_per_example < 2 || self.pairs_per_example > 1000 {
            return bad(format!(
                "pairs per example must be in 2..=1000 (one of each kind at least), got {}",
                self.pairs_per_example
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }

    /// An AdamW optimiser with these settings (betas 0.9/0.999, eps 1e-8 as PyTorch).
    pub fn optimizer(&self) -> ModuleOptimizer {
        let mut c = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(self.weight_decay as f32);
        if self.max_grad_norm > 0.0 {
            c = c.with_grad_clipping(Some(GradientClippingConfig::Norm(
                self.max_grad_norm as f32,
            )));
        }
        c.init()
    }
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps, then linear decay to 0.
pub fn lr_at(peak: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if total == 0 {
        return 0.0;
    }
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let rest = (total - warmup).max(1) as f64;
    peak * ((total - step) as f64 / rest).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shape() {
        let lrs: Vec<f64> = (0..10).map(|s| lr_at(1.0, s, 10, 2)).collect();
        assert_eq!(lrs[0], 0.5);
        assert_eq!(lrs[1], 1.0);
        assert_eq!(lrs[2], 1.0);
        assert!(lrs.windows(2).skip(2).all(|w| w[1] < w[0]));
        assert!(lrs[9] > 0.0);
        assert_eq!(lr_at(1.0, 0, 0, 0), 0.0);
    }

    #[test]
    fn validation_names_the_setting() {
        let c = TrainConfig {
            epochs: 0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("epochs"));
        assert!(TrainConfig::default().validate().is_ok());
    }

    #[test]
    fn small_tasks_get_the_minimum_steps_in_whole_epochs() {
        let c = TrainConfig::default();
        // 16 rows: one step per epoch, so MIN_STEPS epochs.
        assert_eq!(c.epochs_for(16), MIN_STEPS);
        // 450 rows (500 less 10 % held out): 29 steps × 8 epochs already exceed the minimum.
        assert_eq!(c.epochs_for(450), c.epochs);
        let none = TrainConfig {
            min_steps: 0,
            ..c.clone()
        };
        assert_eq!(none.epochs_for(16), none.epochs);
        assert!(c.epochs_for(0) >= 1);
    }

    #[test]
    fn auto_trains_contrastively_only_with_few_rows_per_class() {
        let c = TrainConfig::default();
        let k = CONTRASTIVE_MAX_PER_CLASS;
        assert_eq!(c.objective_for(2 * k, 2), Objective::Contrastive);
        assert_eq!(c.objective_for(2 * k + 1, 2), Objective::Classify);
        let forced = TrainConfig {
            objective: Objective::Classify,
            ..c
        };
        assert_eq!(forced.objective_for(4, 2), Objective::Classify);
    }

    #[test]
    fn settings_saved_before_the_new_fields_load_with_their_defaults() {
        let old = r#"{"epochs":3,"batch_size":8,"lr":0.001,"head_lr":0.003,"seed":7}"#;
        let c: TrainConfig = serde_json::from_str(old).unwrap();
        assert_eq!((c.epochs, c.seed, c.min_steps), (3, 7, MIN_STEPS));
        assert_eq!(
            (c.head_init, c.objective),
            (HeadInit::Random, Objective::Auto)
        );
    }
}
