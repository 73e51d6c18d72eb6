//! The linear-layer factory: the backbone asks it for each of the six per-layer matrices by HF
//! path, so fine-tuning methods plug in adapters without the model ever naming a method.

use std::sync::Mutex;

use tch::{nn, nn::Module, Kind, Tensor};

/// A linear map `x W^T + b` as the backbone sees it; adapters implement it too.
pub trait LinearLayer: std::fmt::Debug + Send {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;

    /// The layer applied to the relative-position embeddings (DeBERTa's second call of
    /// `query_proj`/`key_proj` with `share_att_key`). The same map as [`LinearLayer::forward_t`]
    /// unless the layer was built to leave its adapter off that path (`method.position_query:
    /// frozen`, as the IncreLoRA/AdaLoRA GLUE harnesses call `nn.Linear.forward(self.query_proj,
    /// rel_embeddings)`).
    fn forward_position_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_t(xs, train)
    }
}

/// Builds the linears the backbone asks for. `name` is the HF module path, e.g.
/// `deberta.encoder.layer.3.attention.self.query_proj`; `path` is the matching VarStore path.
pub trait LinearFactory {
    fn linear(&self, path: nn::Path, name: &str, in_dim: i64, out_dim: i64) -> Box<dyn LinearLayer>;
}

#[derive(Debug)]
pub struct PlainLinear(pub nn::Linear, pub Bf16Copy);

impl PlainLinear {
    pub fn new(linear: nn::Linear) -> Self {
        PlainLinear(linear, Bf16Copy::default())
    }
}

impl LinearLayer for PlainLinear {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.1.forward(&self.0, xs)
    }
}

/// A frozen linear's weight and bias cast to bf16 once, instead of at every use: under autocast
/// torch casts a float32 weight that does not require gradients again at each call (its cast
/// cache keeps only trainable leaves), two cast kernels per frozen matrix per forward. The copy
/// is made at the first call under bf16 autocast and remade only when the float32 tensors change
/// (another storage, or an in-place write bumping their version), so it never goes stale. The
/// same rounding as autocast's cast, so outputs are bitwise those of casting at each use; a
/// trainable weight (full fine-tuning) is left to autocast's own cache.
#[derive(Debug, Default)]
pub struct Bf16Copy(Mutex<Option<Bf16Weights>>);

#[derive(Debug)]
struct Bf16Weights {
    ws: Tensor,
    bs: Option<Tensor>,
    /// Storage address and version of the float32 weight and bias the copy was made from.
    source: [(usize, i64); 2],
}

thread_local! {
    /// Set by [`casting_at_each_use`]: frozen weights are cast at each use, as autocast alone does.
    static CAST_AT_EACH_USE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every frozen weight cast at each use (no [`Bf16Copy`]) on this thread: the
/// reference the cast-once copy is tested against.
pub fn casting_at_each_use<T>(f: impl FnOnce() -> T) -> T {
    let before = CAST_AT_EACH_USE.with(|c| c.replace(true));
    let out = f();
    CAST_AT_EACH_USE.with(|c| c.set(before));
    out
}

impl Bf16Copy {
    /// `lin` applied to `xs`, through the bf16 copy where bf16 autocast is on and `lin` is frozen.
    pub fn forward(&self, lin: &nn::Linear, xs: &Tensor) -> Tensor {
        if lin.ws.requires_grad() || !crate::precision::bf16_autocast_active(xs.device()) || CAST_AT_EACH_USE.with(|c| c.get()) {
            return lin.forward(xs);
        }
        let stamp = |t: &Tensor| (t.data_ptr() as usize, t.internal_version());
        let source = [stamp(&lin.ws), lin.bs.as_ref().map_or((0, 0), stamp)];
        let mut copy = self.0.lock().expect("bf16 copy lock poisoned");
        if copy.as_ref().is_none_or(|c| c.source != source) {
            let ws = tch::no_grad(|| lin.ws.to_kind(Kind::BFloat16));
            let bs = lin.bs.as_ref().map(|b| tch::no_grad(|| b.to_kind(Kind::BFloat16)));
            *copy = Some(Bf16Weights { ws, bs, source });
        }
        let c = copy.as_ref().expect("just made");
        xs.linear(&c.ws, c.bs.as_ref())
    }
}

/// The frozen-model factory: every matrix is an ordinary `nn::Linear` with HF's parameter names.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainLinearFactory;

impl LinearFactory for PlainLinearFactory {
    fn linear(&self, path: nn::Path, _name: &str, in_dim: i64, out_dim: i64) -> Box<dyn LinearLayer> {
        Box::new(PlainLinear::new(nn::linear(path, in_dim, out_dim, Default::default())))
    }
}

/// The six per-layer matrices the paper adapts, as HF path suffixes below `layer.<i>.`.
pub const LAYER_MATRICES: [&str; 6] = [
    "attention.self.query_proj",
    "attention.self.key_proj",
    "attention.self.value_proj",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Under bf16 autocast the cast-once copy gives the bits of casting at each use, and an
    /// in-place change of the float32 weight is seen at the next call (the copy is remade).
    #[test]
    fn the_bf16_copy_equals_casting_at_each_use_and_follows_the_weight() {
        crate::precision::enable_bf16(Device::Cpu).unwrap();
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "l", 8, 5, Default::default());
        let _ = lin.ws.set_requires_grad(false);
        let _ = lin.bs.as_ref().unwrap().set_requires_grad(false);
        let x = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
        let copy = Bf16Copy::default();
        let both = || crate::precision::autocast(Device::Cpu, true, || (copy.forward(&lin, &x), lin.forward(&x)));
        let (once, each) = both();
        assert_eq!(once.kind(), Kind::BFloat16);
        assert!(once.equal(&each), "the copy changed the output");
        let _ = tch::no_grad(|| lin.ws.shallow_clone().g_add_scalar_(0.25));
        let (once, each) = both();
        assert!(once.equal(&each), "a stale copy after the weight changed");
        // Outside autocast: the float32 layer itself.
        assert!(copy.forward(&lin, &x).equal(&lin.forward(&x)));
    }
}
