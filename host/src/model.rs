//! The tutorial CNN in tch:
//! `3 x [conv 3x3 stride 1 SAME + bias -> max-pool 2x2 stride 2 SAME -> ReLU] -> flatten -> fc + ReLU -> fc`.
//!
//! Inputs are `[B, C, H, W]` floats in `[0, 1]`, preferably with channels-last memory
//! ([`crate::data::pixels_to_tensor`]). Variable names in the `VarStore`: `conv1.weight`,
//! `conv1.bias`, ..., `fc2.bias`. Conv weights are `[C_out, C_in, 3, 3]`, dense weights
//! `[out, in]`. fc1's input is flattened in tch's CHW order; the exporter permutes its columns
//! to `shared`'s HWC order.
use tch::nn::{self, Module};
use tch::Tensor;
use tinycnn::Arch;

/// Standard deviation of the truncated-normal weight init (the tutorial's).
pub const INIT_STD: f64 = 0.05;
/// Constant bias init (the tutorial's).
pub const INIT_BIAS: f64 = 0.05;

/// The network's trainable layers.
#[derive(Debug)]
pub struct Net {
    pub arch: Arch,
    pub conv1: nn::Conv2D,
    pub conv2: nn::Conv2D,
    pub conv3: nn::Conv2D,
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
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
    /// Creates the layers under `vs` with the tutorial's init. `arch.filters`, `fc_width`,
    /// `channels` and `classes` size them; height and width size fc1 via `arch.flatten_len()`.
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
        let f = arch.filters.map(i64::from);
        let mut conv1 = nn::conv2d(vs / "conv1", arch.channels as i64, f[0], 3, conv_cfg);
        let mut conv2 = nn::conv2d(vs / "conv2", f[0], f[1], 3, conv_cfg);
        let mut conv3 = nn::conv2d(vs / "conv3", f[1], f[2], 3, conv_cfg);
        let mut fc1 = nn::linear(
            vs / "fc1",
            arch.flatten_len() as i64,
            arch.fc_width as i64,
            lin_cfg,
        );
        let mut fc2 = nn::linear(
            vs / "fc2",
            arch.fc_width as i64,
            arch.classes as i64,
            lin_cfg,
        );
        for ws in [
            &mut conv1.ws,
            &mut conv2.ws,
            &mut conv3.ws,
            &mut fc1.ws,
            &mut fc2.ws,
        ] {
            truncated_normal_(ws, INIT_STD);
        }
        Net {
            arch: *arch,
            conv1,
            conv2,
            conv3,
            fc1,
            fc2,
        }
    }

    /// One block: conv (SAME) -> 2x2/2 max-pool with TF SAME semantics (`ceil_mode`, so 7 -> 4)
    /// -> ReLU.
    pub fn block(conv: &nn::Conv2D, xs: &Tensor) -> Tensor {
        xs.apply(conv)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
            .relu()
    }

    /// Logits `[B, classes]` for `xs` `[B, C, H, W]`. The net has no dropout or batch norm, so
    /// `train` changes nothing; it is kept for the `ModuleT` convention.
    pub fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let xs = Self::block(&self.conv1, xs);
        let xs = Self::block(&self.conv2, &xs);
        let xs = Self::block(&self.conv3, &xs);
        let xs = xs.contiguous().flatten(1, -1);
        self.fc2.forward(&self.fc1.forward(&xs).relu())
    }
}

impl nn::ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Net::forward_t(self, xs, train)
    }
}
