//! The tutorial CNN in tch:
//! `N x [conv 3x3 stride 1 SAME + bias -> max-pool 2x2 stride 2 SAME -> ReLU] -> flatten -> fc + ReLU -> fc`,
//! one layer per `tinycnn::Arch::layers()`.
//!
//! Inputs are `[B, C, H, W]` floats in `[0, 1]`, preferably with channels-last memory
//! ([`crate::data::pixels_to_tensor`]). Variable names in the `VarStore`: `conv1.weight`,
//! `conv1.bias`, ..., `fc2.bias`. Conv weights are `[C_out, C_in, 3, 3]`, dense weights
//! `[out, in]`. fc1's input is flattened in tch's CHW order; the exporter permutes its columns
//! to `shared`'s HWC order.
use tch::nn::{self, Module};
use tch::Tensor;
use tinycnn::{Arch, LayerKind};

/// Standard deviation of the truncated-normal weight init (the tutorial's).
pub const INIT_STD: f64 = 0.05;
/// Constant bias init (the tutorial's).
pub const INIT_BIAS: f64 = 0.05;

/// One trainable layer: a conv block's convolution or a dense layer.
#[derive(Debug)]
pub enum NetLayer {
    Conv(nn::Conv2D),
    Dense(nn::Linear),
}

impl NetLayer {
    /// The weight: conv `[C_out, C_in, 3, 3]`, dense `[out, in]`.
    pub fn ws(&self) -> &Tensor {
        match self {
            NetLayer::Conv(c) => &c.ws,
            NetLayer::Dense(d) => &d.ws,
        }
    }

    /// The bias `[out]` (every layer of the tutorial net has one).
    pub fn bs(&self) -> Option<&Tensor> {
        match self {
            NetLayer::Conv(c) => c.bs.as_ref(),
            NetLayer::Dense(d) => d.bs.as_ref(),
        }
    }
}

/// The network's trainable layers, one per `arch.layers()`.
#[derive(Debug)]
pub struct Net {
    pub arch: Arch,
    pub layers: Vec<NetLayer>,
    /// The bit width each layer's weights are quantized at (QAT's fake quantization and the
    /// export), one per `arch.layers()`; int8 unless `tinycnn quantize --weight-bits` says
    /// otherwise.
    pub weight_bits: Vec<tinycnn::WeightBits>,
    /// Training-only dropout on the input of every dense layer (`tinycnn train --dropout`): with
    /// `train` set, each value is zeroed with this probability and the rest are scaled by
    /// `1 / (1 - p)`. Inference (`train` unset) never drops, so the exported network is the same.
    pub dropout: f64,
}

/// Overwrites `t` with a normal(0, std) sample truncated at ±2 std (TF1's `truncated_normal`),
/// by redrawing out-of-range values.
pub fn truncated_normal_(t: &mut Tensor, std: f64) {
    tch::no_grad(|| {
        let mut sample = t.randn_like() * std;
        loop {
            let outside = sample.abs().gt(2.0 * std);
            if !bool::try_from(outside.any()).unwrap_or(false) {
                break;
            }
            sample = (sample.randn_like() * std).where_self(&outside, &sample);
        }
        t.copy_(&sample);
    });
}

impl Net {
    /// Creates the layers under `vs` (named `conv1`.., `fc1`, `fc2` as in `arch.layers()`) with
    /// the tutorial's init.
    pub fn new(vs: &nn::Path, arch: &Arch) -> Net {
        let conv_cfg = nn::ConvConfig {
            padding: 1,
            bs_init: nn::Init::Const(INIT_BIAS),
            ..Default::default()
        };
        let lin_cfg = nn::LinearConfig {
            bs_init: Some(nn::Init::Const(INIT_BIAS)),
            ..Default::default()
        };
        let layers = arch
            .layers()
            .map(|spec| {
                let path = vs / spec.name;
                let mut layer = match spec.kind {
                    LayerKind::ConvBlock(s) => NetLayer::Conv(nn::conv2d(
                        path,
                        s.in_channels as i64,
                        s.out_channels as i64,
                        3,
                        conv_cfg,
                    )),
                    LayerKind::Dense => NetLayer::Dense(nn::linear(
                        path,
                        spec.fan_in as i64,
                        spec.outputs as i64,
                        lin_cfg,
                    )),
                };
                let ws = match &mut layer {
                    NetLayer::Conv(c) => &mut c.ws,
                    NetLayer::Dense(d) => &mut d.ws,
                };
                truncated_normal_(ws, INIT_STD);
                layer
            })
            .collect();
        Net {
            arch: *arch,
            layers,
            weight_bits: vec![tinycnn::WeightBits::S8; arch.layer_count()],
            dropout: 0.0,
        }
    }

    /// Logits `[B, classes]` for `xs` `[B, C, H, W]`. `train` turns on [`Net::dropout`]; the net
    /// has no batch norm, so nothing else depends on it.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (spec, layer) in self.arch.layers().zip(&self.layers) {
            x = match layer {
                // conv (SAME) -> 2x2/2 max-pool with TF SAME semantics (`ceil_mode`, so
                // 7 -> 4) -> ReLU. The bias is added after the pool: float addition of a
                // per-channel constant is monotonic, so `max(a + b, c + b) == max(a, c) + b`
                // exactly, and on the pooled map it is 4x fewer additions and a 4x smaller
                // bias-gradient reduction (oneDNN's fused one was 6% of a `tutorial` step).
                NetLayer::Conv(conv) => {
                    let pooled = x
                        .conv2d(&conv.ws, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
                        .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true);
                    match &conv.bs {
                        Some(bs) => pooled + bs.view([1, -1, 1, 1]),
                        None => pooled,
                    }
                }
                NetLayer::Dense(fc) => {
                    if x.dim() > 2 {
                        x = x.contiguous().flatten(1, -1);
                    }
                    if train && self.dropout > 0.0 {
                        x = x.dropout(self.dropout, true);
                    }
                    fc.forward(&x)
                }
            };
            if spec.relu {
                x = x.relu();
            }
        }
        x
    }
}

impl nn::ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Net::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropout acts in training only: inference gives the same logits with and without it.
    #[test]
    fn dropout_changes_training_forward_only() {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut net = Net::new(&vs.root(), &tinycnn::Arch::fashion());
        let xs = Tensor::rand([4, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
        let plain = tch::no_grad(|| net.forward_t(&xs, true));
        net.dropout = 0.5;
        let inference = tch::no_grad(|| net.forward_t(&xs, false));
        let training = tch::no_grad(|| net.forward_t(&xs, true));
        assert!(plain.equal(&inference), "dropout changed inference");
        assert!(!plain.equal(&training), "dropout did not act in training");
    }

    /// Adding the conv bias after the pool is the same function as conv with bias, then pool.
    #[test]
    fn bias_after_the_pool_matches_conv_with_bias() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let arch = tinycnn::Arch::fashion();
        let net = Net::new(&vs.root(), &arch);
        let xs = Tensor::rand([4, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
        let ours = tch::no_grad(|| net.forward_t(&xs, false));
        let mut x = xs.shallow_clone();
        for (spec, layer) in arch.layers().zip(&net.layers) {
            x = match layer {
                NetLayer::Conv(conv) => {
                    x.apply(conv)
                        .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
                }
                NetLayer::Dense(fc) => fc.forward(&x.contiguous().flatten(1, -1)),
            };
            if spec.relu {
                x = x.relu();
            }
        }
        let diff = f64::try_from((ours - &x).abs().max()).unwrap();
        assert!(diff <= 1e-6, "logits differ by {diff}");
    }
}
