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
}

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
        }
    }
}

impl TrainConfig {
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
        for (name, v) in [("lr", self.lr), ("head lr", self.head_lr)] {
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
}
