//! Exponential moving average of the weights (`tinycnn train --ema DECAY`): a shadow copy of the
//! net that follows the trained weights after every optimizer step,
//! `shadow <- shadow + (1 - d) * (live - shadow)`, with `d = min(DECAY, (1 + t) / (10 + t))` at
//! step `t` so that the early average is not pinned to the random init.
//!
//! The shadow net is the one validated, kept as `best.ot` and tested; it has the same layers as
//! the trained net, so the exported network does not change. The trained weights stay in
//! `last.ot` (what `--resume` continues) and the shadow's in `ema.ot` beside it.
use tch::{nn, Tensor};
use tinycnn::Arch;

use crate::train::model::Net;

/// File name of the shadow weights of the most recent epoch in a run folder.
pub const EMA_LAST: &str = "ema.ot";

/// The shadow net and the pairs of tensors it averages.
pub struct Ema {
    pub vs: nn::VarStore,
    pub net: Net,
    decay: f64,
    steps: u64,
    /// `(shadow, live)` for every variable, sharing storage with both `VarStore`s.
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// A shadow of `live` starting at its current weights.
    pub fn new(live: &nn::VarStore, arch: &Arch, decay: f64) -> Ema {
        let mut vs = nn::VarStore::new(live.device());
        let net = Net::new(&vs.root(), arch);
        vs.copy(live)
            .expect("the shadow net has the live net's variables");
        vs.freeze();
        let live_vars = live.variables();
        let pairs = vs
            .variables()
            .into_iter()
            .map(|(name, shadow)| {
                let l = live_vars[&name].shallow_clone();
                (shadow, l)
            })
            .collect();
        Ema {
            vs,
            net,
            decay,
            steps: 0,
            pairs,
        }
    }

    /// Moves the shadow towards the live weights; call after every optimizer step.
    pub fn update(&mut self) {
        let t = self.steps as f64;
        let decay = self.decay.min((1.0 + t) / (10.0 + t));
        self.steps += 1;
        tch::no_grad(|| {
            for (shadow, live) in &mut self.pairs {
                let _ = shadow.lerp_(live, 1.0 - decay);
            }
        });
    }

    /// Continues from shadow weights saved by an earlier run of the same net (`--resume`), counting
    /// `steps` optimizer steps already taken.
    pub fn resume(&mut self, saved: &nn::VarStore, steps: u64) -> Result<(), tch::TchError> {
        self.vs.copy(saved)?;
        self.steps = steps;
        Ok(())
    }
}
