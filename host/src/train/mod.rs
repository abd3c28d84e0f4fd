//! Float training of the tutorial CNN: Adam, seeded validation split, optional augmentation and
//! learning-rate decay, per-epoch metrics (CSV, JSON, PNG), atomic checkpoints, Ctrl-C and resume.
pub mod alloc;
pub mod checkpoint;
pub mod ema;
pub mod eval;
pub mod model;
pub mod plot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};
use tinycnn::Arch;

use crate::data::augment::Augment;
use crate::data::{pixels_to_tensor, prefetch_batches, split_indices, TrainSet};
use checkpoint::{CheckpointMeta, EpochMetrics, CHECKPOINT_FORMAT};
use ema::Ema;
use model::Net;

/// Named architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The tutorial's 128x128x3 input.
    Tutorial,
    /// 28x28x1, for Fashion-MNIST.
    Fashion,
}

impl Preset {
    /// The preset's name as used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tutorial => "tutorial",
            Preset::Fashion => "fashion",
        }
    }

    /// The preset's architecture; `classes` is a placeholder until the data set is known.
    pub fn arch(self) -> Arch {
        match self {
            Preset::Tutorial => Arch::tutorial(2),
            Preset::Fashion => Arch::fashion(),
        }
    }
}

/// Per-architecture overrides of a preset (all optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize, clap::Args)]
pub struct ArchOverrides {
    /// Input height in pixels (overrides the preset).
    #[arg(long)]
    pub height: Option<u16>,
    /// Input width in pixels (overrides the preset).
    #[arg(long)]
    pub width: Option<u16>,
    /// Input channels, 1 (gray) or 3 (RGB) (overrides the preset).
    #[arg(long)]
    pub channels: Option<u8>,
    /// Filters of the conv blocks, one number per block (1 to 6), e.g. `32,32,64` (the
    /// tutorial's 3 blocks) or `16,32,32,64` (overrides the preset).
    #[arg(long, value_delimiter = ',', num_args = 1..=tinycnn::MAX_BLOCKS)]
    pub filters: Option<Vec<u16>>,
    /// Width of the hidden dense layer (overrides the preset).
    #[arg(long)]
    pub fc_width: Option<u16>,
}

impl ArchOverrides {
    /// `preset`'s architecture with these overrides applied and `classes` set.
    pub fn apply(&self, preset: Preset, classes: u16) -> Result<Arch> {
        let mut arch = preset.arch();
        arch.classes = classes;
        if let Some(h) = self.height {
            arch.height = h;
        }
        if let Some(w) = self.width {
            arch.width = w;
        }
        if let Some(c) = self.channels {
            arch.channels = c;
        }
        if let Some(f) = &self.filters {
            arch.filters = match tinycnn::Filters::new(f) {
                Some(filters) if !f.is_empty() => filters,
                _ => bail!(
                    "--filters takes 1 to {} numbers, one per conv block, e.g. --filters 32,32,64 \
                     (the tutorial) or --filters 16,32,32,64 (a fourth block shrinks fc1 4x)",
                    tinycnn::MAX_BLOCKS
                ),
            };
        }
        if let Some(fc) = self.fc_width {
            arch.fc_width = fc;
        }
        arch.validate()
            .map_err(|e| anyhow::anyhow!("invalid architecture {arch:?}: {e}; fix --height/--width/--channels/--filters/--fc-width"))?;
        Ok(arch)
    }
}

/// How the learning rate evolves over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `--lr` throughout (the tutorial).
    Constant,
    /// Cosine decay from `--lr` to 0 over all steps of the run.
    Cosine,
}

impl LrSchedule {
    /// Learning rate at `step` of `total` steps.
    pub fn at(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

fn parse_augment(s: &str) -> Result<Augment, String> {
    Augment::parse(s)
}

/// Options of `tinycnn train`.
#[derive(Clone, Debug, Serialize, Deserialize, clap::Args)]
pub struct TrainOptions {
    /// Training images: one sub-folder of images per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder for checkpoints, metrics, plots and report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Architecture preset.
    #[arg(long, value_enum, default_value = "tutorial")]
    pub preset: Preset,
    #[command(flatten)]
    pub arch: ArchOverrides,
    /// Number of epochs to train (in total, counting epochs done before a --resume).
    #[arg(long, default_value_t = 16)]
    pub epochs: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Decoupled weight decay (AdamW) per step, as a fraction of lr; 0 is plain Adam.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub weight_decay: f64,
    /// Label smoothing of the training loss: the target puts 1 - S on the label and spreads S
    /// over all classes (validation and test losses stay unsmoothed).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub label_smoothing: f64,
    /// Dropout on the inputs of the dense layers (fc1 and fc2), in training only: each value is
    /// zeroed with this probability. The exported network is unchanged; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub dropout: f64,
    /// Exponential moving average of the weights, e.g. 0.999: the average is what is validated,
    /// kept as best.ot and tested (same network, smoother weights); 0 is off.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub ema: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "constant")]
    pub lr_schedule: LrSchedule,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Fraction of the images held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Seed of the split, the init and the shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Augmentation: `none`; `centred` (aligned images like Fashion-MNIST:
    /// flip,translate=0.1,erase=0.5); `photo` (photos like cats and dogs:
    /// flip,rotate=10,crop=0.2,jitter=0.2); `default` (flip,rotate=10,crop=0.1); or a comma list
    /// of `flip`, `rotate=DEG`, `crop=F`, `translate=F`, `jitter=F`, `erase=P`.
    #[arg(long, default_value = "none", value_parser = parse_augment)]
    pub augment: Augment,
    /// Continue the run in --out from its last checkpoint (weights, epoch count, metrics and
    /// best score carry over; Adam's moment estimates restart, tch cannot save them).
    #[arg(long)]
    pub resume: bool,
    /// Start afresh even if --out already holds a checkpoint (it is overwritten).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Test images (same class folders): the best checkpoint is evaluated on them at the end.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Report file to merge results into [default: OUT/report.json].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// libtorch CPU threads [default: libtorch's choice, one per core]. On a busy machine 1 can
    /// be much faster than 2, because libtorch's threads spin while they wait for each other.
    #[arg(long)]
    pub threads: Option<i32>,
    /// Largest size of the decoded training images, in MiB, that is held in memory. A larger data
    /// set is checked once and then decoded batch by batch in a background thread, with the same
    /// batches in the same order (0 always streams).
    #[arg(long, default_value_t = DEFAULT_MEMORY_BUDGET_MB)]
    #[serde(default = "default_memory_budget_mb")]
    pub memory_budget_mb: u64,
}

/// Default of `--memory-budget-mb`: 4 GiB of decoded images, e.g. 87k tutorial images at
/// 128x128x3.
pub const DEFAULT_MEMORY_BUDGET_MB: u64 = 4096;

fn default_memory_budget_mb() -> u64 {
    DEFAULT_MEMORY_BUDGET_MB
}

/// Batches read ahead by the background loader during training.
const PREFETCH_BATCHES: usize = 4;

/// What a finished training run produced.
#[derive(Debug)]
pub struct TrainSummary {
    pub arch: Arch,
    pub labels: Vec<String>,
    pub metrics: Vec<EpochMetrics>,
    pub best_val_accuracy: f64,
    pub train_images_per_second: f64,
    pub skipped_files: usize,
    pub test_accuracy: Option<f64>,
    pub best_checkpoint: PathBuf,
}

/// Set by Ctrl-C; the training loop stops at the next batch without saving the partial epoch.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once per process: the first Ctrl-C asks training to stop, a
/// second one exits at once.
pub fn install_interrupt_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: stopping at the next batch; completed epochs are kept (Ctrl-C again to quit now)");
        });
        if let Err(e) = result {
            eprintln!("warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will stop training abruptly");
        }
    });
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Training stopped by Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("training interrupted during epoch {epoch}; {kept}; continue with `tinycnn train --resume` and the same options")]
pub struct Interrupted {
    pub epoch: usize,
    pub kept: String,
}

/// The mean cross-entropy of `logits` against class ids `ys`, with `label_smoothing` (the
/// target puts `1 - S` on the label and spreads `S` over all classes; 0 is plain cross-entropy).
pub(crate) fn training_loss(logits: &Tensor, ys: &Tensor, label_smoothing: f64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(ys, None, tch::Reduction::Mean, -100, label_smoothing)
}

/// The seed of epoch `epoch` (0-based) of a run seeded with `seed`: its shuffle and augmentation.
pub(crate) fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_add((epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

fn write_metrics(out: &Path, metrics: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from(
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,seconds,train_images_per_second\n",
    );
    for m in metrics {
        csv.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.2},{:.1}\n",
            m.epoch,
            m.train_loss,
            m.train_accuracy,
            m.val_loss,
            m.val_accuracy,
            m.learning_rate,
            m.seconds,
            m.train_images_per_second
        ));
    }
    tinycnn_runtime::fsutil::write_atomic(&out.join("metrics.csv"), csv.as_bytes())?;
    tinycnn_runtime::fsutil::write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(metrics)?.as_bytes(),
    )?;
    plot::training_curves(&out.join("curves.png"), metrics)?;
    Ok(())
}

/// Trains according to `opts`, writing everything into `opts.out`.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    check_options(opts)?;
    let last_path = opts.out.join(checkpoint::LAST);
    let best_path = opts.out.join(checkpoint::BEST);
    install_interrupt_handler();
    if let Some(threads) = opts.threads {
        tch::set_num_threads(threads.max(1));
    }
    let device = Device::cuda_if_available();
    let input = opts.arch.apply(opts.preset, 2)?;
    let (data, train_idx, val_idx) = open_data(opts, &input, device)?;
    let arch = opts
        .arch
        .apply(opts.preset, data.list().labels.len() as u16)?;
    let Start {
        vs,
        mut net,
        mut metrics,
        mut best,
    } = start(opts, &last_path, arch, &data.list().labels, device)?;
    net.dropout = opts.dropout;
    let start_epoch = metrics.len();
    let mut opt = optimizer(&vs, opts.lr, opts.weight_decay)?;
    let batches_per_epoch = train_idx.len().div_ceil(opts.batch);
    let mut ema = start_ema(opts, &vs, &arch, start_epoch * batches_per_epoch, device)?;
    let fit = Fit {
        opts,
        net: &net,
        source: data.source(),
        device,
        batches_per_epoch,
        total_steps: batches_per_epoch * opts.epochs,
        start_epoch,
        last_path: &last_path,
    };
    let options = checkpoint::RunOptions::Float(Box::new(opts.clone()));

    for epoch in start_epoch..opts.epochs {
        let number = epoch + 1;
        let mut order = train_idx.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed(opts.seed, epoch)));
        let epoch_start = Instant::now();
        let trained = fit.epoch(epoch, &order, &mut opt, &mut ema)?;
        let validated = ema.as_ref().map_or(&net, |e| &e.net);
        let val = eval::evaluate(validated, fit.source, &val_idx, opts.batch.max(256), device)?;
        let m = EpochMetrics {
            epoch: number,
            train_loss: trained.loss_sum / trained.seen as f64,
            train_accuracy: trained.correct as f64 / trained.seen as f64,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            learning_rate: trained.lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
            train_images_per_second: trained.seen as f64 / trained.seconds,
        };
        print_epoch(&m);
        metrics.push(m);
        let improved = val.accuracy > best;
        if improved {
            best = val.accuracy;
        }
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            preset: opts.preset.name().to_string(),
            arch,
            labels: data.list().labels.to_vec(),
            epoch: number,
            best_val_accuracy: best,
            metrics: metrics.clone(),
            options: options.clone(),
        };
        save_epoch(&opts.out, &vs, ema.as_ref(), &meta, improved)?;
        write_metrics(&opts.out, &metrics)?;
    }
    if metrics.is_empty() {
        bail!(
            "no epoch to train: --epochs is {}; pass a positive number",
            opts.epochs
        );
    }
    let train_images_per_second = images_per_second(&metrics, start_epoch, train_idx.len());
    let summary = TrainSummary {
        arch,
        labels: data.list().labels.to_vec(),
        metrics,
        best_val_accuracy: best,
        train_images_per_second,
        skipped_files: data.list().skipped.len(),
        test_accuracy: None,
        best_checkpoint: best_path,
    };
    let summary = test_and_report(opts, summary)?;
    println!(
        "best validation accuracy {:.2}% ; checkpoints {} and {}; metrics {}",
        best * 100.0,
        summary.best_checkpoint.display(),
        last_path.display(),
        opts.out.join("metrics.csv").display()
    );
    Ok(summary)
}

/// The tutorial's per-epoch line.
fn print_epoch(m: &EpochMetrics) {
    println!(
        "Training Epoch {} --- Training Accuracy: {:>6.1}%, Validation Accuracy: {:>6.1}%,  Validation Loss: {:.3}  ({:.0} img/s, {:.0}s)",
        m.epoch,
        m.train_accuracy * 100.0,
        m.val_accuracy * 100.0,
        m.val_loss,
        m.train_images_per_second,
        m.seconds
    );
}

/// Writes the epoch's checkpoints into the run folder `out`: the trained weights to `last.ot`,
/// the weight average (if any) to `ema.ot`, and, when validation `improved`, the validated
/// weights (the average if any) to `best.ot`.
fn save_epoch(
    out: &Path,
    vs: &nn::VarStore,
    ema: Option<&Ema>,
    meta: &CheckpointMeta,
    improved: bool,
) -> Result<()> {
    checkpoint::save(&out.join(checkpoint::LAST), vs, meta)?;
    if let Some(ema) = ema {
        checkpoint::save(&out.join(ema::EMA_LAST), &ema.vs, meta)?;
    }
    if improved {
        let validated = ema.map_or(vs, |e| &e.vs);
        checkpoint::save(&out.join(checkpoint::BEST), validated, meta)?;
    }
    Ok(())
}

/// Refuses options that cannot train, and an `--out` that holds a run unless `--resume` or
/// `--force` says what to do with it.
fn check_options(opts: &TrainOptions) -> Result<()> {
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if !(opts.val_split > 0.0 && opts.val_split < 1.0) {
        bail!("--val-split must be between 0 and 1 (exclusive), e.g. 0.2");
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!("--lr must be a positive number, e.g. 1e-4");
    }
    if !(0.0..1.0).contains(&opts.weight_decay) {
        bail!("--weight-decay must be in [0, 1), e.g. 0.05");
    }
    if !(0.0..1.0).contains(&opts.ema) {
        bail!("--ema must be in [0, 1), e.g. 0.999 (0 is off)");
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        bail!("--dropout must be in [0, 1), e.g. 0.3 (0 is off)");
    }
    if !(0.0..1.0).contains(&opts.label_smoothing) {
        bail!("--label-smoothing must be in [0, 1), e.g. 0.1");
    }
    if !opts.resume && !opts.force && opts.out.join(checkpoint::LAST).exists() {
        bail!(
            "{} already holds a checkpoint; pass --resume to continue that run, --force to overwrite it, or choose another --out",
            opts.out.display()
        );
    }
    Ok(())
}

/// The training images and their seeded train / validation split.
fn open_data(
    opts: &TrainOptions,
    input: &Arch,
    device: Device,
) -> Result<(TrainSet, Vec<usize>, Vec<usize>)> {
    let started = Instant::now();
    let data = TrainSet::open(
        &opts.data,
        input,
        opts.memory_budget_mb.saturating_mul(1 << 20),
    )
    .with_context(|| format!("loading training images from {}", opts.data.display()))?;
    data.list().warn_skipped();
    let (train_idx, val_idx) = split_indices(data.list().len(), opts.val_split, opts.seed);
    if train_idx.is_empty() || val_idx.is_empty() {
        bail!(
            "{} images are too few for a {:.0}% validation split; add images or change --val-split",
            data.list().len(),
            opts.val_split * 100.0
        );
    }
    println!(
        "{} images in {} classes from {} ({} skipped), {} train / {} validation, {} in {:.1}s on {:?}",
        data.list().len(),
        data.list().labels.len(),
        opts.data.display(),
        data.list().skipped.len(),
        train_idx.len(),
        val_idx.len(),
        if data.is_streamed() {
            format!(
                "checked (decoded batch by batch: over --memory-budget-mb {})",
                opts.memory_budget_mb
            )
        } else {
            "loaded".to_string()
        },
        started.elapsed().as_secs_f64(),
        device
    );
    Ok((data, train_idx, val_idx))
}

/// Where training starts: a fresh net, or the last checkpoint with its metrics (`--resume`).
struct Start {
    vs: nn::VarStore,
    net: Net,
    metrics: Vec<EpochMetrics>,
    best: f64,
}

fn start(
    opts: &TrainOptions,
    last_path: &Path,
    arch: Arch,
    labels: &[String],
    device: Device,
) -> Result<Start> {
    if !opts.resume {
        tch::manual_seed(opts.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = Net::new(&vs.root(), &arch);
        return Ok(Start {
            vs,
            net,
            metrics: Vec::new(),
            best: f64::NEG_INFINITY,
        });
    }
    let ck = checkpoint::load(last_path, device).with_context(|| {
        format!(
            "resuming from {} (drop --resume to start afresh)",
            last_path.display()
        )
    })?;
    if ck.meta.arch != arch || ck.meta.labels != labels {
        bail!(
            "the checkpoint in {} was trained with {:?} on classes {:?}, but these options give {:?} on {:?}; resume with the original --data/--preset options",
            opts.out.display(),
            ck.meta.arch,
            ck.meta.labels,
            arch,
            labels
        );
    }
    println!(
        "resuming after epoch {} (Adam moments restart)",
        ck.meta.epoch
    );
    Ok(Start {
        vs: ck.vs,
        net: ck.net,
        metrics: ck.meta.metrics,
        best: ck.meta.best_val_accuracy,
    })
}

/// The weight average of `--ema`, if on: fresh from the live weights, or on `--resume` the saved
/// average of the run's last epoch (`ema.ot`) after `steps_done` optimizer steps.
fn start_ema(
    opts: &TrainOptions,
    vs: &nn::VarStore,
    arch: &Arch,
    steps_done: usize,
    device: Device,
) -> Result<Option<Ema>> {
    if opts.ema <= 0.0 {
        return Ok(None);
    }
    let mut ema = Ema::new(vs, arch, opts.ema);
    let saved = opts.out.join(ema::EMA_LAST);
    if opts.resume && steps_done > 0 {
        if saved.exists() {
            let ck = checkpoint::load(&saved, device)
                .with_context(|| format!("resuming the weight average from {}", saved.display()))?;
            ema.resume(&ck.vs, steps_done as u64)
                .with_context(|| format!("{} does not match the run's net", saved.display()))?;
        } else {
            println!(
                "{} is missing (the run had no --ema): the weight average starts from the resumed weights",
                saved.display()
            );
        }
    }
    Ok(Some(ema))
}

/// What one epoch of the training loop needs besides the optimizer.
struct Fit<'a> {
    opts: &'a TrainOptions,
    net: &'a Net,
    source: &'a dyn crate::data::ImageSource,
    device: Device,
    batches_per_epoch: usize,
    total_steps: usize,
    start_epoch: usize,
    last_path: &'a Path,
}

/// One epoch's training-set sums.
struct EpochTrained {
    loss_sum: f64,
    correct: i64,
    seen: usize,
    /// The learning rate of the last batch.
    lr: f64,
    /// Seconds spent training (validation excluded).
    seconds: f64,
}

impl Fit<'_> {
    /// Trains epoch `epoch` (0-based) on `order`, with a progress bar. Ctrl-C ends it with
    /// [`Interrupted`]; a non-finite loss ends it with what to change.
    fn epoch(
        &self,
        epoch: usize,
        order: &[usize],
        opt: &mut nn::Optimizer,
        ema: &mut Option<Ema>,
    ) -> Result<EpochTrained> {
        let opts = self.opts;
        let number = epoch + 1;
        let bar = ProgressBar::new(self.batches_per_epoch as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})",
            )
            .expect("static progress template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{number}/{}", opts.epochs));
        let epoch_start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let mut lr = opts.lr;
        let seed = epoch_seed(opts.seed, epoch);
        let source = self.source;
        prefetch_batches(
            source,
            order,
            opts.batch,
            PREFETCH_BATCHES,
            |b, pixels| {
                opts.augment
                    .apply_batch(pixels, &source.list().arch, seed ^ b as u64)
            },
            |b, pixels, targets| -> Result<()> {
                if interrupted() {
                    bar.abandon();
                    let kept = if self.start_epoch == epoch && epoch == 0 {
                        "no epoch had completed, so there is no checkpoint".to_string()
                    } else {
                        format!(
                            "the checkpoint of epoch {epoch} is in {}",
                            self.last_path.display()
                        )
                    };
                    return Err(Interrupted {
                        epoch: number,
                        kept,
                    }
                    .into());
                }
                lr = opts.lr_schedule.at(
                    opts.lr,
                    epoch * self.batches_per_epoch + b,
                    self.total_steps,
                );
                opt.set_lr(lr);
                let xs = pixels_to_tensor(pixels, targets.len(), &source.list().arch, self.device);
                let ys = Tensor::from_slice(&targets).to_device(self.device);
                let logits = self.net.forward_t(&xs, true);
                let loss = training_loss(&logits, &ys, opts.label_smoothing);
                opt.backward_step(&loss);
                if let Some(ema) = ema.as_mut() {
                    ema.update();
                }
                let batch_loss = f64::try_from(&loss)?;
                if !batch_loss.is_finite() {
                    bail!("the loss became {batch_loss} in epoch {number}; lower --lr and start again");
                }
                loss_sum += batch_loss * targets.len() as f64;
                correct += i64::try_from(
                    logits
                        .argmax(-1, false)
                        .eq_tensor(&ys)
                        .sum(tch::Kind::Int64),
                )?;
                seen += targets.len();
                let rate = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4} {:.0} img/s",
                    loss_sum / seen as f64,
                    rate
                ));
                bar.inc(1);
                Ok(())
            },
        )?;
        let seconds = epoch_start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok(EpochTrained {
            loss_sum,
            correct,
            seen,
            lr,
            seconds,
        })
    }
}

/// Adam, or AdamW (decoupled weight decay) when `weight_decay` is positive.
fn optimizer(vs: &nn::VarStore, lr: f64, weight_decay: f64) -> Result<nn::Optimizer> {
    let built = if weight_decay > 0.0 {
        nn::AdamW {
            wd: weight_decay,
            ..nn::AdamW::default()
        }
        .build(vs, lr)
    } else {
        nn::Adam::default().build(vs, lr)
    };
    built.context("creating the Adam optimizer")
}

/// Training throughput of this run's epochs (all epochs if it trained none): the harmonic mean
/// of their rates, i.e. images trained / seconds spent training. `images` is the training split.
fn images_per_second(metrics: &[EpochMetrics], start_epoch: usize, images: usize) -> f64 {
    let run = &metrics[start_epoch.min(metrics.len())..];
    let rated = if run.is_empty() { metrics } else { run };
    let n = images as f64;
    let seconds: f64 = rated.iter().map(|m| n / m.train_images_per_second).sum();
    n * rated.len() as f64 / seconds
}

/// Evaluates the best checkpoint on `--test` (if given) and merges the run's figures into the
/// report.
fn test_and_report(opts: &TrainOptions, mut summary: TrainSummary) -> Result<TrainSummary> {
    if let Some(test_dir) = &opts.test {
        let result = eval::run(
            &summary.best_checkpoint,
            test_dir,
            Some(&opts.out.join("confusion.png")),
        )?;
        summary.skipped_files += result.skipped_files;
        summary.test_accuracy = Some(result.accuracy);
    }
    let mut fields = json!({
        "preset": opts.preset.name(),
        "classes": summary.labels,
        "train_images_per_second": summary.train_images_per_second,
        "skipped_files": summary.skipped_files,
        "best_val_accuracy": summary.best_val_accuracy,
        "epochs": summary.metrics.len(),
        "checkpoint": summary.best_checkpoint,
    });
    if let Some(acc) = summary.test_accuracy {
        fields["float_test_accuracy"] = json!(acc);
    }
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| opts.out.join("report.json"));
    tinycnn_runtime::report::merge(&report_path, fields)?;
    Ok(summary)
}

/// Trains on `steps` batches of synthetic images for `arch` after `warmup` batches and returns
/// the training throughput in images per second (batch assembly, forward, backward, Adam step).
pub fn bench_train(
    arch: &Arch,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: Device,
) -> Result<f64> {
    arch.validate()
        .map_err(|e| anyhow::anyhow!("invalid architecture {arch:?}: {e}"))?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), arch);
    let mut opt = optimizer(&vs, 1e-4, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<u8> = (0..batch * arch.input_len())
        .map(|_| rand::Rng::gen(&mut rng))
        .collect();
    let targets: Vec<i64> = (0..batch)
        .map(|i| (i % arch.classes as usize) as i64)
        .collect();
    let mut step = || -> Result<()> {
        let xs = pixels_to_tensor(&pixels, batch, arch, device);
        let ys = Tensor::from_slice(&targets).to_device(device);
        let loss = net.forward_t(&xs, true).cross_entropy_for_logits(&ys);
        opt.backward_step(&loss);
        f64::try_from(&loss)?;
        Ok(())
    };
    for _ in 0..warmup {
        step()?;
    }
    let start = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    Ok((batch * steps) as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{ArchOverrides, Preset};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        arch: ArchOverrides,
    }

    #[test]
    fn filters_take_one_number_per_block_up_to_the_block_limit() {
        let comma = ["tinycnn", "--filters", "16,32,32,64"];
        let spaced = ["tinycnn", "--filters", "16", "32", "32", "64"];
        for args in [&comma[..], &spaced[..]] {
            let cli = Cli::try_parse_from(args).unwrap();
            let arch = cli.arch.apply(Preset::Tutorial, 2).unwrap();
            assert_eq!(arch.filters.as_slice(), &[16, 32, 32, 64]);
        }
        let seven = Cli::try_parse_from(["tinycnn", "--filters", "8,8,8,8,8,8,8"]).unwrap();
        let err = seven
            .arch
            .apply(Preset::Tutorial, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 to 6 numbers"), "{err}");
    }
}
