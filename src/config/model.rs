//! The model: which architecture, its sizes and activations, and the networks built from them:
//! the MLP (`--arch mlp`) and the convolutional GAN (`--arch dcgan`) whose layers follow the
//! image size (28x28, 32x32 or 64x64; docs/models.md, "The convolutional model", has them layer by layer).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::activation::Activation;
use crate::nn::{self, BatchNorm, Cast, Conv2d, ConvTranspose2d, Dropout, Init, Layer, Linear, Net};

/// Which network keys the seeded initialisation (the Philox counter's net word).
pub const NET_D: u32 = 0;
pub const NET_G: u32 = 1;
pub const NET_CLASSIFIER: u32 = 2;

/// The networks' architecture (`--arch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Fully connected G and D (`--g-hidden`, `--d-hidden`).
    #[default]
    Mlp,
    /// Convolutional G and D with batch norm (PyTorch's DCGAN example; `--g-channels`,
    /// `--d-channels`), for 28x28, 32x32 and 64x64 images.
    Dcgan,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Dcgan => "dcgan",
        }
    }
}

/// What follows D's convolutions after the first in `--arch dcgan` (`--d-norm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DNorm {
    /// Batch norm, as in PyTorch's example (per pass: the real and the fake batch each have
    /// their own statistics).
    #[default]
    Batch,
    /// Nothing: each convolution has a bias instead.
    None,
    /// Spectral normalisation (Miyato et al. 2018) of every convolution and linear weight of D,
    /// one power iteration per D update (`nn::spectral`); no batch norm, a bias on each hidden
    /// layer. For both architectures.
    Spectral,
}

impl DNorm {
    pub fn name(self) -> &'static str {
        match self {
            DNorm::Batch => "batch",
            DNorm::None => "none",
            DNorm::Spectral => "spectral",
        }
    }
}

/// DiffAugment's policy (`--augment`, Zhao et al. 2020): which of colour, translation and
/// cutout the images D judges get, real and fake alike. Always applied in that order. Written in
/// config.json as the flag spells it ("color,translation,cutout", "none").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AugmentPolicy {
    pub color: bool,
    pub translation: bool,
    pub cutout: bool,
}

impl AugmentPolicy {
    pub const ALL: AugmentPolicy = AugmentPolicy { color: true, translation: true, cutout: true };

    pub fn is_none(&self) -> bool {
        *self == AugmentPolicy::default()
    }

    /// The kernel's bits (`kernels::augment`).
    pub fn flags(self) -> u32 {
        use crate::kernels::augment::{COLOR, CUTOUT, TRANSLATION};
        (self.color as u32 * COLOR) | (self.translation as u32 * TRANSLATION) | (self.cutout as u32 * CUTOUT)
    }

    pub fn name(self) -> String {
        let on = [("color", self.color), ("translation", self.translation), ("cutout", self.cutout)];
        let names: Vec<&str> = on.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

impl std::str::FromStr for AugmentPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut p = AugmentPolicy::default();
        if s.trim() == "none" {
            return Ok(p);
        }
        for part in s.split(',').map(str::trim) {
            match part {
                "color" | "colour" => p.color = true,
                "translation" => p.translation = true,
                "cutout" => p.cutout = true,
                other => {
                    return Err(format!(
                    "unknown augmentation '{other}': give any of color, translation, cutout (comma-separated), or none"
                ))
                }
            }
        }
        Ok(p)
    }
}

impl std::fmt::Display for AugmentPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for AugmentPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for AugmentPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The images a convolutional model is built for (NCHW).
pub use crate::data::ImageShape;

/// The image sizes `--arch dcgan` has an architecture for.
pub const DCGAN_SIZES: [usize; 3] = [28, 32, 64];

/// The DCGAN recipe's init: conv (and linear) weights N(0, 0.02), batch-norm gamma N(1, 0.02).
pub const DCGAN_INIT_STD: f32 = 0.02;

/// Sizes and activations of both networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Configs written before `--arch` existed are MLPs.
    #[serde(default)]
    pub arch: Arch,
    /// The images of `--arch dcgan` (channels, height, width).
    #[serde(default)]
    pub image: Option<ImageShape>,
    /// DCGAN widths: ngf and ndf of PyTorch's example (G's last hidden layer has ngf channels,
    /// D's first ndf; each layer inward doubles them).
    #[serde(default = "sixty_four")]
    pub g_channels: usize,
    #[serde(default = "sixty_four")]
    pub d_channels: usize,
    pub data_dim: usize,
    pub latent_dim: usize,
    pub g_hidden: Vec<usize>,
    pub d_hidden: Vec<usize>,
    pub g_activation: Activation,
    pub d_activation: Activation,
    pub g_output: Activation,
    /// PacGAN packing: D judges `pack` samples at once, concatenated (real with real, fake with
    /// fake), so its input is pack x data_dim wide. 1 = a plain GAN.
    #[serde(default = "one")]
    pub pack: usize,
    /// `--arch dcgan`: what follows D's hidden convolutions (configs written before it existed
    /// had batch norm).
    #[serde(default)]
    pub d_norm: DNorm,
    /// `--arch dcgan` at 28x28: features of a hidden fully connected layer (batch norm, then
    /// the activation) between z and G's first layer, and between D's last convolution and its
    /// logit, as InfoGAN's MNIST model has (1024 each); 0: none, PyTorch's recipe (and every
    /// config written before these existed).
    #[serde(default)]
    pub g_fc_hidden: usize,
    #[serde(default)]
    pub d_fc_hidden: usize,
    /// DiffAugment on D's inputs (`--augment`; configs written before it had none). Needs
    /// `image`, which MLP configs then carry too.
    #[serde(default, skip_serializing_if = "AugmentPolicy::is_none")]
    pub augment: AugmentPolicy,
    /// `--conditional`: the number of classes G is asked for and D told (0: unconditional, as
    /// every config written before it). G joins a learned class embedding (classes x
    /// [`ModelConfig::g_embed_dim`]) to z; D is a projection discriminator
    /// (`nn::ProjectionHead`). See docs/conditional.md.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub classes: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn one() -> usize {
    1
}

fn sixty_four() -> usize {
    64
}

/// Most parameters one network may have (offsets are u32 on the GPU, with room for Adam's v).
pub const MAX_PARAMS: usize = u32::MAX as usize / 2;

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::input(format!("{what} must be at least 1")));
        if self.data_dim == 0 {
            return bad("the data dimension");
        }
        if self.pack == 0 {
            return bad("--pack");
        }
        if self.latent_dim == 0 {
            return bad("--latent-dim");
        }
        if self.g_hidden.contains(&0) {
            return bad("every --g-hidden size");
        }
        if self.d_hidden.contains(&0) {
            return bad("every --d-hidden size");
        }
        if !self.augment.is_none() {
            match self.image {
                Some(img) if img.channels * img.height * img.width == self.data_dim => {}
                _ => {
                    return Err(Error::input(
                        "--augment is for images (it moves and cuts out pixels); this data is not images",
                    ))
                }
            }
        }
        if self.arch == Arch::Dcgan {
            return self.validate_dcgan();
        }
        let d_input = self.data_dim.checked_mul(self.pack);
        for (name, input, hidden, output) in [
            ("G", Some(self.g_input_dim()), &self.g_hidden, Some(self.data_dim)),
            ("D", d_input, &self.d_hidden, Some(1)),
        ] {
            let count = input.zip(output).and_then(|(i, o)| mlp_param_count(i, hidden, o));
            match count {
                Some(n) if n <= MAX_PARAMS => {}
                Some(n) => {
                    return Err(Error::input(format!("{name} has {n} parameters; at most {MAX_PARAMS} are supported")))
                }
                None => return Err(Error::input(format!("{name} is too large to exist"))),
            }
        }
        Ok(())
    }

    fn validate_dcgan(&self) -> Result<()> {
        let Some(img) = self.image else {
            return Err(Error::input("--arch dcgan needs image data"));
        };
        if img.height != img.width || !DCGAN_SIZES.contains(&img.height) {
            return Err(Error::input(format!(
                "--arch dcgan has architectures for 28x28, 32x32 and 64x64 images, not {}x{}; \
                 resize the images (e.g. train a folder with --image-size 64) or use --arch mlp",
                img.height, img.width
            )));
        }
        if img.channels * img.height * img.width != self.data_dim {
            return Err(Error::input("the image shape does not match the data dimension"));
        }
        for (flag, width) in [("--g-channels", self.g_channels), ("--d-channels", self.d_channels)] {
            if width == 0 || width > 4096 {
                return Err(Error::input(format!("{flag} must be from 1 to 4096, not {width}")));
            }
        }
        for (flag, width) in [("--g-fc-hidden", self.g_fc_hidden), ("--d-fc-hidden", self.d_fc_hidden)] {
            if width > 65536 {
                return Err(Error::input(format!("{flag} must be from 0 to 65536, not {width}")));
            }
            if width > 0 && img.height != 28 {
                return Err(Error::input(format!(
                    "{flag} is for 28x28 images (whose G starts and D ends with a linear layer); \
                     the {0}x{0} model has none",
                    img.height
                )));
            }
        }
        for (name, net) in [("G", self.generator(false)), ("D", self.discriminator(0.0, false))] {
            if net.params_len > MAX_PARAMS {
                return Err(Error::input(format!(
                    "{name} has {} parameters; at most {MAX_PARAMS} are supported",
                    net.params_len
                )));
            }
        }
        Ok(())
    }

    /// G: latent -> hidden... -> data, `g_activation` then `g_output`. At f16 its first layer
    /// casts the f32 noise to f16. For `--arch dcgan`, the convolutional G of the image size.
    pub fn generator(&self, half: bool) -> Net {
        if self.arch == Arch::Dcgan {
            return Net::new("G", NET_G, self.dcgan_generator());
        }
        let mut layers: Vec<(String, Box<dyn Layer>)> = vec![];
        if half {
            layers.push(("cast".into(), Box::new(Cast { features: self.latent_dim, to_f16: true })));
        }
        let input = self.g_input_dim();
        if self.classes > 0 {
            let embed = nn::Embedding { classes: self.classes, dim: self.g_embed_dim(), row: input };
            layers.push(("embed".into(), Box::new(embed)));
        }
        layers.extend(nn::mlp(input, &self.g_hidden, self.data_dim, self.g_activation, self.g_output, 0.0));
        Net::new("G", NET_G, layers)
    }

    /// A conditional G's class embedding width: the number of classes, as PyTorch-GAN's cgan.py
    /// (`nn.Embedding(n_classes, n_classes)`), joined before z. The embedding only feeds G's
    /// first linear layer, whose product with it can place each class's C vectors anywhere once
    /// the width is C, so a wider one would add parameters, not expressiveness. The DCGAN's G has
    /// it too, beside its conditional batch norms: with the class only in the batch norms' scale
    /// and shift, it collapsed at 600 steps of the digits (agreement 19%, FD 480) where with the
    /// embedding joined it drew the asked digits (82.6%, FD 138.6; docs/conditional.md). 0 for
    /// an unconditional G.
    pub fn g_embed_dim(&self) -> usize {
        self.classes
    }

    /// Values per row of G's input: the class embedding, then z.
    pub fn g_input_dim(&self) -> usize {
        self.g_embed_dim() + self.latent_dim
    }

    /// D: pack x data -> hidden... -> 1 logit, `d_activation` on the hidden layers, then
    /// `dropout` after each of them. At f16 its last layer casts the logits back to f32. For
    /// `--arch dcgan`, the convolutional D of the image size.
    pub fn discriminator(&self, dropout: f32, half: bool) -> Net {
        if self.arch == Arch::Dcgan {
            return Net::new("D", NET_D, self.dcgan_discriminator(dropout));
        }
        let input = self.data_dim * self.pack;
        let mut layers = self.augment_layer();
        let spectral = self.d_norm == DNorm::Spectral;
        layers.extend(nn::mlp_with(
            input,
            &self.d_hidden,
            1,
            self.d_activation,
            Activation::Identity,
            dropout,
            spectral,
        ));
        if self.classes > 0 {
            // The projection head in place of the last linear layer, under its name.
            let (name, last) = layers.pop().expect("an MLP has a last layer");
            let fan_in = last.in_features();
            let head = nn::ProjectionHead { fan_in, classes: self.classes, spectral, init: Init::Default };
            layers.push((name, Box::new(head)));
        }
        if half {
            layers.push(("logits".into(), Box::new(Cast { features: 1, to_f16: false })));
        }
        Net::new("D", NET_D, layers)
    }
}

type Layers = Vec<(String, Box<dyn Layer>)>;

impl ModelConfig {
    /// D's first layer, `augment`, when `--augment` is on: the images of each row, augmented.
    fn augment_layer(&self) -> Layers {
        match self.image.filter(|_| !self.augment.is_none()) {
            Some(image) => {
                let aug = nn::Augment { image, pack: self.pack.max(1), flags: self.augment.flags() };
                vec![("augment".into(), Box::new(aug) as Box<dyn Layer>)]
            }
            None => vec![],
        }
    }
}

/// Appends a layer and returns its output's (channels, height, width).
fn push(
    layers: &mut Layers,
    name: String,
    layer: impl Layer + 'static,
    chw: (usize, usize, usize),
) -> (usize, usize, usize) {
    layers.push((name, Box::new(layer)));
    chw
}

impl ModelConfig {
    fn image_shape(&self) -> ImageShape {
        self.image.expect("validated: --arch dcgan has an image shape")
    }

    /// Batch norm then an activation on (c, h, w), as one layer `bnI` (the activation fused
    /// into its kernels).
    fn norm_act(&self, layers: &mut Layers, i: usize, (c, h, w): (usize, usize, usize), act: Activation) {
        let bn = BatchNorm { channels: c, spatial: h * w, init_std: DCGAN_INIT_STD, act };
        push(layers, format!("bn{i}"), bn, (c, h, w));
    }

    /// G's batch norm then its activation over `channels` of `spatial` values: conditional batch
    /// norm (per-class gamma and beta) in a conditional G, else [`BatchNorm`].
    fn g_norm(&self, channels: usize, spatial: usize, act: Activation) -> Box<dyn Layer> {
        match self.classes {
            0 => Box::new(BatchNorm { channels, spatial, init_std: DCGAN_INIT_STD, act }),
            classes => Box::new(nn::ConditionalBatchNorm { channels, spatial, classes, init_std: DCGAN_INIT_STD, act }),
        }
    }

    /// `hidden`: Linear(fan_in, features) without bias, then `bn_hidden` (per feature, ending in
    /// the activation, `act_name`'s); `--g-fc-hidden` / `--d-fc-hidden`.
    fn fc_hidden(&self, layers: &mut Layers, fan_in: usize, features: usize, act: Activation, act_name: &str) {
        let init = Init::Normal(DCGAN_INIT_STD);
        if act_name == "lrelu" && self.d_norm == DNorm::Spectral {
            // D's, spectrally normalised: a bias and the activation, no batch norm.
            let fc = Linear { fan_in, fan_out: features, activation: act, bias: true, init, spectral: true };
            push(layers, "hidden".into(), fc, (features, 1, 1));
            return;
        }
        let fc =
            Linear { fan_in, fan_out: features, activation: Activation::Identity, bias: false, init, spectral: false };
        push(layers, "hidden".into(), fc, (features, 1, 1));
        let bn: Box<dyn Layer> = match act_name {
            "relu" => self.g_norm(features, 1, act),
            _ => Box::new(BatchNorm { channels: features, spatial: 1, init_std: DCGAN_INIT_STD, act }),
        };
        layers.push(("bn_hidden".into(), bn));
    }

    /// G of PyTorch's DCGAN example, shrunk to the image size: from z, transposed convolutions
    /// (4, 2, 1) double the size and halve the channels down to ngf, then to the image's channels
    /// and `g_output`; batch norm and `g_activation` after every hidden layer. 32 and 64 start
    /// with a (4, 1, 0) transposed convolution from 1x1 to 4x4; 28 with a linear layer to 7x7
    /// (PyTorch's 28x28 DCGAN recipe, ../shared/peers/torch_dcgan.py), after `--g-fc-hidden`'s
    /// hidden linear layer when there is one.
    fn dcgan_generator(&self) -> Layers {
        let img = self.image_shape();
        let (g, nz, act) = (self.g_channels, self.g_input_dim(), self.g_activation);
        let normal = Init::Normal(DCGAN_INIT_STD);
        let mut layers = Layers::new();
        if self.classes > 0 {
            // A conditional G's input rows are [class embedding; z], as the MLP's.
            let embed = nn::Embedding { classes: self.classes, dim: self.g_embed_dim(), row: nz };
            layers.push(("embed".into(), Box::new(embed)));
        }
        let nz = match self.g_fc_hidden {
            0 => nz,
            hidden => {
                self.fc_hidden(&mut layers, nz, hidden, act, "relu");
                hidden
            }
        };
        // Blocks after the first double the size: 7 -> 28 in two, 4 -> 32 in three, 4 -> 64 in four.
        let (linear, doublings) =
            (img.height == 28, if img.height == 28 { 2 } else { img.height.trailing_zeros() as usize - 2 });
        // Channels of the first block: ngf times 2^(doublings - 1), halved by each doubling.
        let c0 = g << (doublings - 1);
        let mut chw = if linear {
            let fc = Linear {
                fan_in: nz,
                fan_out: c0 * 49,
                activation: Activation::Identity,
                bias: false,
                init: normal,
                spectral: false,
            };
            push(&mut layers, "fc".into(), fc, (c0, 7, 7))
        } else {
            let identity = Activation::Identity;
            let t = ConvTranspose2d {
                c_in: nz,
                c_out: c0,
                h: 1,
                w: 1,
                k: 4,
                stride: 1,
                pad: 0,
                bias: false,
                init: normal,
                activation: identity,
            };
            push(&mut layers, "deconv1".into(), t, (c0, 4, 4))
        };
        layers.push(("bn1".into(), self.g_norm(chw.0, chw.1 * chw.2, act)));
        for block in 2..=doublings + 1 {
            let (c, h, w) = chw;
            let last = block == doublings + 1;
            let c_out = if last { img.channels } else { c / 2 };
            // The last ends in the output activation (fused); the others in batch norm's.
            let activation = if last { self.g_output } else { Activation::Identity };
            let t = ConvTranspose2d {
                c_in: c,
                c_out,
                h,
                w,
                k: 4,
                stride: 2,
                pad: 1,
                bias: false,
                init: normal,
                activation,
            };
            // The transposed convolutions count from 1 (after 28's linear layer, from its block).
            let name = format!("deconv{}", if linear { block - 1 } else { block });
            chw = push(&mut layers, name, t, (c_out, 2 * h, 2 * w));
            if !last {
                layers.push((format!("bn{block}"), self.g_norm(chw.0, chw.1 * chw.2, act)));
            }
        }
        layers
    }

    /// D of PyTorch's DCGAN example, shrunk to the image size: convolutions (4, 2, 1) halve the
    /// size and double the channels from ndf, `d_activation` after each, batch norm after all but
    /// the first; then one logit: a (4, 1, 0) convolution from 4x4 (32, 64), or a linear layer
    /// from 7x7 (28). With `--pack P` the first convolution takes P images stacked as P x C
    /// channels (in NCHW, P consecutive images of the batch are exactly that: no copy); with
    /// `dropout`, dropout after every activation. `--d-norm none` leaves the batch norms out;
    /// `--d-fc-hidden` adds a hidden linear layer before the logit. A conditional D ends in a
    /// projection head instead, under the last layer's name (`nn::ProjectionHead`).
    fn dcgan_discriminator(&self, dropout: f32) -> Layers {
        let img = self.image_shape();
        let (d, act) = (self.d_channels, self.d_activation);
        let normal = Init::Normal(DCGAN_INIT_STD);
        let mut layers = self.augment_layer();
        let spectral = self.d_norm == DNorm::Spectral;
        let batch_norm = self.d_norm == DNorm::Batch;
        let end = if img.height == 28 { 7 } else { 4 };
        let mut chw = (img.channels * self.pack, img.height, img.width);
        let mut i = 1;
        while chw.1 > end {
            let (c, h, w) = chw;
            let c_out = if i == 1 { d } else { 2 * c };
            // Without batch norm after it, a hidden convolution has a bias of its own.
            let bias = i > 1 && !batch_norm;
            // The activation in the convolution's epilogue where no batch norm follows it.
            let plain = i == 1 || !batch_norm;
            let activation = if plain { act } else { Activation::Identity };
            let conv =
                Conv2d { c_in: c, c_out, h, w, k: 4, stride: 2, pad: 1, bias, init: normal, spectral, activation };
            chw = push(&mut layers, format!("conv{i}"), conv, (c_out, h / 2, w / 2));
            if !plain {
                self.norm_act(&mut layers, i, chw, act);
            }
            if dropout > 0.0 {
                let (c, h, w) = chw;
                push(
                    &mut layers,
                    format!("dropout{i}"),
                    Dropout { features: c * h * w, rate: dropout, salt: i as u32 },
                    chw,
                );
            }
            i += 1;
        }
        let (mut c, mut h, mut w) = chw;
        if self.d_fc_hidden > 0 {
            self.fc_hidden(&mut layers, c * h * w, self.d_fc_hidden, act, "lrelu");
            (c, h, w) = (self.d_fc_hidden, 1, 1);
            if dropout > 0.0 {
                let dropout = Dropout { features: c, rate: dropout, salt: i as u32 };
                push(&mut layers, "dropout_hidden".into(), dropout, (c, 1, 1));
            }
        }
        if self.classes > 0 {
            // A projection head on the flattened (c, h, w) features: at 32 and 64 the last
            // convolution (4x4, valid, from 4x4 to one logit) is a linear layer over them.
            let name = if img.height == 28 { "fc".to_string() } else { format!("conv{i}") };
            let head = nn::ProjectionHead { fan_in: c * h * w, classes: self.classes, spectral, init: normal };
            push(&mut layers, name, head, (1, 1, 1));
        } else if img.height == 28 {
            let fc = Linear {
                fan_in: c * h * w,
                fan_out: 1,
                activation: Activation::Identity,
                bias: true,
                init: normal,
                spectral,
            };
            push(&mut layers, "fc".into(), fc, (1, 1, 1));
        } else {
            let conv = Conv2d {
                c_in: c,
                c_out: 1,
                h,
                w,
                k: 4,
                stride: 1,
                pad: 0,
                bias: false,
                init: normal,
                spectral,
                activation: Activation::Identity,
            };
            push(&mut layers, format!("conv{i}"), conv, (1, 1, 1));
        }
        layers
    }
}

/// Parameters of an MLP, or None if the count overflows.
pub fn mlp_param_count(input: usize, hidden: &[usize], output: usize) -> Option<usize> {
    let sizes: Vec<usize> = [input].iter().chain(hidden).chain([output].iter()).copied().collect();
    sizes.windows(2).try_fold(0usize, |acc, w| acc.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        ModelConfig {
            arch: Arch::Mlp,
            image: None,
            g_channels: 64,
            d_channels: 64,
            data_dim: 784,
            latent_dim: 64,
            g_hidden: vec![256, 256],
            d_hidden: vec![256, 256],
            g_activation: Activation::Relu,
            d_activation: Activation::Relu,
            g_output: Activation::Sigmoid,
            pack: 1,
            d_norm: DNorm::Batch,
            g_fc_hidden: 0,
            d_fc_hidden: 0,
            augment: AugmentPolicy::default(),
            classes: 0,
        }
    }

    #[test]
    fn benchmark_model_sizes() {
        let c = config();
        let (g, d) = (c.generator(false), c.discriminator(0.0, false));
        assert_eq!(g.params_len, 64 * 256 + 256 + 256 * 256 + 256 + 256 * 784 + 784);
        assert_eq!(d.params_len, 784 * 256 + 256 + 256 * 256 + 256 + 256 + 1);
        assert_eq!(d.output_features(), 1);
        let names: Vec<String> = g.tensors().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
        // Casts and dropout add no tensors and move none.
        assert_eq!(c.generator(true).tensors(), g.tensors());
        assert_eq!(c.discriminator(0.3, true).tensors(), d.tensors());
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let g = config().generator(false);
        let a = g.init(1);
        assert_eq!(a, g.init(1));
        assert_ne!(a, g.init(2));
        let t = &g.tensors()[2];
        let bound = 1.0 / (t.shape[1] as f32).sqrt();
        assert!(a[t.off..t.off + t.shape.iter().product::<usize>()].iter().all(|v| v.abs() <= bound));
    }
}

#[cfg(test)]
mod dcgan_tests {
    use super::*;

    fn dcgan(channels: usize, size: usize, nz: usize) -> ModelConfig {
        ModelConfig {
            arch: Arch::Dcgan,
            image: Some(ImageShape { channels, height: size, width: size }),
            g_channels: 64,
            d_channels: 64,
            data_dim: channels * size * size,
            latent_dim: nz,
            g_hidden: vec![],
            d_hidden: vec![],
            g_activation: Activation::Relu,
            d_activation: Activation::LeakyRelu,
            g_output: Activation::Tanh,
            pack: 1,
            d_norm: DNorm::Batch,
            g_fc_hidden: 0,
            d_fc_hidden: 0,
            augment: AugmentPolicy::default(),
            classes: 0,
        }
    }

    #[test]
    fn at_64x64_it_is_pytorchs_dcgan_example_exactly() {
        // examples/dcgan with nc 3, nz 100, ngf = ndf = 64: G 3,576,704 parameters, D 2,765,568.
        let m = dcgan(3, 64, 100);
        m.validate().unwrap();
        let (g, d) = (m.generator(false), m.discriminator(0.0, false));
        assert_eq!((g.params_len, d.params_len), (3_576_704, 2_765_568));
        assert_eq!((g.input_features(), g.output_features()), (100, 3 * 64 * 64));
        assert_eq!((d.input_features(), d.output_features()), (3 * 64 * 64, 1));
        let names: Vec<String> = g.tensors().into_iter().map(|t| t.name).collect();
        assert_eq!(&names[..4], ["deconv1.weight", "bn1.weight", "bn1.bias", "deconv2.weight"]);
        assert_eq!(g.tensors()[0].shape, [100, 512, 4, 4]);
        let state: Vec<String> = d.state_tensors().into_iter().map(|t| t.name).collect();
        assert_eq!(
            state,
            [
                "bn2.running_mean",
                "bn2.running_var",
                "bn3.running_mean",
                "bn3.running_var",
                "bn4.running_mean",
                "bn4.running_var"
            ]
        );
    }

    #[test]
    fn at_28x28_it_is_the_peers_recipe_and_at_32x32_the_example_shrunk() {
        // ../shared/peers/torch_dcgan.py: G 533,888 parameters, D 138,625 (z 64, 1 channel).
        let m = dcgan(1, 28, 64);
        m.validate().unwrap();
        assert_eq!((m.generator(false).params_len, m.discriminator(0.0, false).params_len), (533_888, 138_625));
        let m = dcgan(3, 32, 100);
        m.validate().unwrap();
        let (g, d) = (m.generator(false), m.discriminator(0.0, false));
        assert_eq!((g.output_features(), d.input_features(), d.output_features()), (3072, 3072, 1));
        assert_eq!(g.tensors()[0].shape, [100, 256, 4, 4]);
    }

    #[test]
    fn without_batch_norm_d_has_biases_instead() {
        let m = ModelConfig { d_norm: DNorm::None, ..dcgan(1, 28, 64) };
        m.validate().unwrap();
        let d = m.discriminator(0.0, false);
        let names: Vec<_> = d.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["conv1", "conv2", "fc"]);
        assert_eq!(d.state_len, 0);
        let tensors: Vec<_> = d.tensors().into_iter().map(|t| (t.name, t.shape)).collect();
        assert!(tensors.contains(&("conv2.bias".into(), vec![128])), "{tensors:?}");
        // bn2's gamma and beta (2 x 128) give way to conv2's bias (128).
        assert_eq!(d.params_len, 138_625 - 128);
        // A config written before the flag had batch norm.
        let mut json = serde_json::to_value(dcgan(1, 28, 64)).unwrap();
        json.as_object_mut().unwrap().remove("d_norm");
        assert_eq!(serde_json::from_value::<ModelConfig>(json).unwrap().d_norm, DNorm::Batch);
    }

    #[test]
    fn hidden_linear_layers_sit_between_z_and_g_and_after_ds_convolutions() {
        let m = ModelConfig { g_fc_hidden: 1024, d_fc_hidden: 1024, ..dcgan(1, 28, 64) };
        m.validate().unwrap();
        let (g, d) = (m.generator(false), m.discriminator(0.3, false));
        let names = |n: &Net| n.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
        // The activations are fused into the layers before them (batch norm, the convolutions).
        assert_eq!(names(&g)[..3], ["hidden", "bn_hidden", "fc"]);
        assert_eq!(names(&d)[5..], ["hidden", "bn_hidden", "dropout_hidden", "fc"]);
        // InfoGAN's MNIST model: z 64 -> 1024 (+ gamma, beta) -> 6272, and 6272 -> 1024 -> 1.
        assert_eq!(g.params_len, 533_888 + 64 * 1024 + 2 * 1024 + 1024 * 6272 - 64 * 6272);
        assert_eq!(d.params_len, 138_625 + 6272 * 1024 + 2 * 1024 + 1024 + 1 - 6272 - 1);
        assert_eq!(g.state_tensors()[0].name, "bn_hidden.running_mean");
        let e = ModelConfig { d_fc_hidden: 8, ..dcgan(3, 32, 64) }.validate().unwrap_err().to_string();
        assert!(e.contains("--d-fc-hidden is for 28x28 images"), "{e}");
        let mut json = serde_json::to_value(dcgan(1, 28, 64)).unwrap();
        json.as_object_mut().unwrap().retain(|k, _| !k.ends_with("fc_hidden"));
        let old: ModelConfig = serde_json::from_value(json).unwrap();
        assert_eq!((old.g_fc_hidden, old.d_fc_hidden), (0, 0));
    }

    #[test]
    fn other_sizes_are_refused() {
        for (c, s) in [(1, 48), (3, 16)] {
            let e = dcgan(c, s, 64).validate().unwrap_err().to_string();
            assert!(e.contains("28x28, 32x32 and 64x64"), "{e}");
        }
    }

    #[test]
    fn packing_stacks_images_as_channels_and_dropout_follows_each_activation() {
        let m = ModelConfig { pack: 3, ..dcgan(3, 32, 64) };
        m.validate().unwrap();
        let d = m.discriminator(0.25, false);
        assert_eq!(d.input_features(), 3 * 3 * 32 * 32);
        assert_eq!(d.tensors()[0].shape, [64, 9, 4, 4]);
        let names: Vec<_> = d.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["conv1", "dropout1", "conv2", "bn2", "dropout2", "conv3", "bn3", "dropout3", "conv4"]);
    }
}
