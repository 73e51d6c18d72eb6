//! DeBERTaV2/V3 backbone, computing what HF transformers' `DebertaV2Model` computes (eval and
//! train mode), with HF parameter names. Relative ("disentangled") attention: c2p and p2c terms,
//! log-bucketed relative positions, optional shared position keys and normalised rel. embeddings.

use tch::{nn, nn::Module, Kind, Tensor};

use super::config::DebertaConfig;
use super::linear::{LinearFactory, LinearLayer};

/// HF's activation functions by config name (validated in `DebertaConfig::validate`).
pub fn activation(name: &str, xs: &Tensor) -> Tensor {
    match name {
        "gelu" => xs.gelu("none"),
        "gelu_pytorch_tanh" => xs.gelu("tanh"),
        "relu" => xs.relu(),
        "tanh" => xs.tanh(),
        other => unreachable!("activation {other} passed validation"),
    }
}

fn layer_norm(path: nn::Path, size: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(path, vec![size], nn::LayerNormConfig { eps, ..Default::default() })
}

/// Relative positions q - k for a sequence of `len` tokens, bucketed as HF's
/// `make_log_bucket_position` (in float32, exactly as HF computes it). Shape [len, len], int64.
pub fn relative_positions(len: i64, bucket_size: i64, max_position: i64, device: tch::Device) -> Tensor {
    let ids = Tensor::arange(len, (Kind::Int64, device));
    let rel = ids.unsqueeze(1) - ids.unsqueeze(0);
    if bucket_size <= 0 || max_position <= 0 {
        return rel;
    }
    let mid = bucket_size / 2;
    let sign = rel.sign();
    let inside = rel.lt(mid).logical_and(&rel.gt(-mid));
    let abs_pos = rel.abs().where_self(&inside.logical_not(), &Tensor::from(mid - 1).to_device(device));
    // HF: ceil(log(abs/mid) / log(tensor((max-1)/mid)) * (mid-1)) + mid, all float32.
    let denom = Tensor::from(((max_position - 1) as f64 / mid as f64) as f32).to_device(device).log();
    let log_pos = ((abs_pos.to_kind(Kind::Float) / mid as f64).log() / denom * (mid - 1) as f64).ceil() + mid as f64;
    let bucketed = rel.to_kind(Kind::Float).where_self(&abs_pos.le(mid), &(log_pos * sign));
    bucketed.to_kind(Kind::Int64)
}

#[derive(Debug)]
pub struct Embeddings {
    word: nn::Embedding,
    position: Option<nn::Embedding>,
    token_type: Option<nn::Embedding>,
    embed_proj: Option<nn::Linear>,
    layer_norm: nn::LayerNorm,
    dropout: f64,
}

impl Embeddings {
    fn new(p: nn::Path, c: &DebertaConfig) -> Self {
        let e = c.embedding_size();
        let init = nn::Init::Randn { mean: 0.0, stdev: c.initializer_range };
        let ecfg = nn::EmbeddingConfig { ws_init: init, padding_idx: c.pad_token_id, ..Default::default() };
        let word = nn::embedding(&p / "word_embeddings", c.vocab_size, e, ecfg);
        let position =
            c.position_biased_input.then(|| nn::embedding(&p / "position_embeddings", c.max_position_embeddings, e, Default::default()));
        let token_type =
            (c.type_vocab_size > 0).then(|| nn::embedding(&p / "token_type_embeddings", c.type_vocab_size, e, Default::default()));
        let embed_proj = (e != c.hidden_size)
            .then(|| nn::linear(&p / "embed_proj", e, c.hidden_size, nn::LinearConfig { bias: false, ..Default::default() }));
        let layer_norm = layer_norm(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps);
        Embeddings { word, position, token_type, embed_proj, layer_norm, dropout: c.hidden_dropout_prob }
    }

    fn forward_t(&self, input_ids: &Tensor, token_type_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let len = input_ids.size()[1];
        let mut xs = self.word.forward(input_ids);
        if let Some(pos) = &self.position {
            let ids = Tensor::arange(len, (Kind::Int64, input_ids.device())).unsqueeze(0);
            xs = xs + pos.forward(&ids);
        }
        if let Some(tt) = &self.token_type {
            xs = xs + tt.forward(token_type_ids);
        }
        if let Some(proj) = &self.embed_proj {
            xs = proj.forward(&xs);
        }
        let xs = self.layer_norm.forward(&xs);
        let kind = xs.kind();
        let xs = xs * mask.unsqueeze(2).to_kind(kind);
        xs.dropout(self.dropout, train)
    }
}

#[derive(Debug)]
struct SelfAttention {
    query: Box<dyn LinearLayer>,
    key: Box<dyn LinearLayer>,
    value: Box<dyn LinearLayer>,
    pos_key: Option<nn::Linear>,
    pos_query: Option<nn::Linear>,
    heads: i64,
    head_size: i64,
    c2p: bool,
    p2c: bool,
    relative: bool,
    share_att_key: bool,
    attn_dropout: f64,
    pos_dropout: f64,
}

impl SelfAttention {
    fn new(p: nn::Path, name: &str, c: &DebertaConfig, f: &dyn LinearFactory) -> Self {
        let all = c.num_attention_heads * c.head_size();
        let h = c.hidden_size;
        let query = f.linear(&p / "query_proj", &format!("{name}.query_proj"), h, all);
        let key = f.linear(&p / "key_proj", &format!("{name}.key_proj"), h, all);
        let value = f.linear(&p / "value_proj", &format!("{name}.value_proj"), h, all);
        let (c2p, p2c) = (c.has_c2p(), c.has_p2c());
        let separate = c.relative_attention && !c.share_att_key;
        let pos_key = (separate && c2p).then(|| nn::linear(&p / "pos_key_proj", h, all, Default::default()));
        let pos_query = (separate && p2c).then(|| nn::linear(&p / "pos_query_proj", h, all, Default::default()));
        SelfAttention {
            query,
            key,
            value,
            pos_key,
            pos_query,
            heads: c.num_attention_heads,
            head_size: c.head_size(),
            c2p,
            p2c,
            relative: c.relative_attention,
            share_att_key: c.share_att_key,
            attn_dropout: c.attention_probs_dropout_prob,
            pos_dropout: c.hidden_dropout_prob,
        }
    }

    /// [b, l, heads*d] -> [b, heads, l, d]
    fn split_heads(&self, xs: &Tensor) -> Tensor {
        let s = xs.size();
        xs.view([s[0], s[1], self.heads, -1]).permute([0, 2, 1, 3])
    }

    fn forward_t(&self, hs: &Tensor, mask: &Tensor, rel: Option<&Relative>, train: bool) -> Tensor {
        let q = self.split_heads(&self.query.forward_t(hs, train));
        let k = self.split_heads(&self.key.forward_t(hs, train));
        let v = self.split_heads(&self.value.forward_t(hs, train));
        let scale_factor = 1 + self.c2p as i64 + self.p2c as i64;
        // HF computes sqrt(d * factor) as a float32 tensor.
        let scale = ((self.head_size * scale_factor) as f32).sqrt() as f64;
        let mut scores = q.matmul(&(k.transpose(-1, -2) / scale));
        if let (true, Some(rel)) = (self.relative, rel) {
            // Dropout over all 2 * att_span rows (HF's draw), then only the rows in reach.
            let rel_emb = rel.embeddings.dropout(self.pos_dropout, train).narrow(0, rel.first_row, rel.rows);
            scores = scores + self.disentangled_bias(&q, &k, rel, &rel_emb, scale, train);
        }
        // HF fills with torch.finfo(dtype).min of the scores' own dtype: f32::MIN does not fit a
        // bf16 tensor (LibTorch refuses the conversion), and softmax takes no dtype, so autocast
        // computes it in float32 as HF's does.
        let scores = scores.masked_fill(&mask.logical_not(), dtype_min(scores.kind()));
        let probs = scores.softmax(-1, None::<Kind>).dropout(self.attn_dropout, train);
        let ctx = probs.matmul(&v).permute([0, 2, 1, 3]).contiguous();
        let s = ctx.size();
        ctx.view([s[0], s[1], -1])
    }

    /// The c2p and p2c score terms. `rel_emb` holds the `rel.rows` relative-embedding rows from
    /// `rel.first_row` on: the only ones the [l, l] bucketed positions index (HF projects all
    /// 2 * att_span rows through the query and key projections; the other rows are never read).
    fn disentangled_bias(&self, q: &Tensor, k: &Tensor, rel: &Relative, rel_emb: &Tensor, scale: f64, train: bool) -> Tensor {
        let rel_emb = rel_emb.unsqueeze(0);
        let (b, h, l) = (q.size()[0], q.size()[1], q.size()[2]);
        let mut score = Tensor::zeros([1], (q.kind(), q.device()));
        let index_shape = [b, h, l, l];
        if self.c2p {
            let pos_key = match (&self.pos_key, self.share_att_key) {
                (_, true) => self.key.forward_position_t(&rel_emb, train),
                (Some(pk), false) => pk.forward(&rel_emb),
                (None, false) => unreachable!("pos_key_proj exists whenever c2p is used without share_att_key"),
            };
            let pos_key = self.split_heads(&pos_key); // [1, h, rows, d]
            let c2p = q.matmul(&pos_key.transpose(-1, -2)); // [b, h, l, rows]
            score = score + c2p.gather(-1, &rel.c2p_index.expand(index_shape, false), false) / scale;
        }
        if self.p2c {
            let pos_query = match (&self.pos_query, self.share_att_key) {
                (_, true) => self.query.forward_position_t(&rel_emb, train),
                (Some(pq), false) => pq.forward(&rel_emb),
                (None, false) => unreachable!("pos_query_proj exists whenever p2c is used without share_att_key"),
            };
            let pos_query = self.split_heads(&pos_query);
            let p2c = k.matmul(&pos_query.transpose(-1, -2)); // [b, h, l(key), rows]
            score = score + p2c.gather(-1, &rel.p2c_index.expand(index_shape, false), false).transpose(-1, -2) / scale;
        }
        score
    }
}

/// What every layer's relative attention shares in one forward pass.
#[derive(Debug)]
struct Relative {
    /// The normalised relative embeddings, all 2 * att_span rows.
    embeddings: Tensor,
    /// The rows a sequence of this length reaches: `rows` from `first_row` on (2L - 1 of them
    /// while L <= position_buckets / 2).
    first_row: i64,
    rows: i64,
    /// HF's c2p index clamp(rel_pos + span, 0, 2 span - 1) and p2c index
    /// clamp(-rel_pos + span, 0, 2 span - 1), less `first_row`: [l, l].
    c2p_index: Tensor,
    p2c_index: Tensor,
}

/// The index part of [`Relative`] for one sequence length: (first_row, rows, c2p, p2c).
type RelativeIndex = (i64, i64, Tensor, Tensor);

impl Relative {
    /// Builds the index tables of a length on the CPU and copies them to `device` once; later
    /// forwards of that length on that device reuse them from `cache` (no host work, no copy).
    fn new(embeddings: Tensor, len: i64, span: i64, buckets: i64, max_position: i64, device: tch::Device, cache: &RelativeCache) -> Self {
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        let (first_row, rows, c2p, p2c) = map.entry((len, format!("{device:?}"))).or_insert_with(|| {
            let rel_pos = relative_positions(len, buckets, max_position, tch::Device::Cpu);
            // Bucketed positions are symmetric (bucket(-x) = -bucket(x)): both indices lie in
            // [span - m, span + m] with m the largest |bucket|, clamped to the table. (A CPU
            // tensor: reading it waits for nothing.)
            let m = rel_pos.abs().max().int64_value(&[]);
            let first_row = (span - m).max(0);
            let last_row = (span + m).min(2 * span - 1);
            let index = |pos: Tensor| ((pos + span).clamp(0, 2 * span - 1) - first_row).to_device(device);
            (first_row, last_row - first_row + 1, index(rel_pos.shallow_clone()), index(-rel_pos))
        });
        Relative { embeddings, first_row: *first_row, rows: *rows, c2p_index: c2p.shallow_clone(), p2c_index: p2c.shallow_clone() }
    }
}

/// Relative-position index tables by (sequence length, device).
type RelativeCache = std::sync::Mutex<std::collections::HashMap<(i64, String), RelativeIndex>>;

/// Dense + dropout + residual LayerNorm (HF's SelfOutput and Output).
#[derive(Debug)]
struct ResidualOutput {
    dense: Box<dyn LinearLayer>,
    layer_norm: nn::LayerNorm,
    dropout: f64,
}

impl ResidualOutput {
    fn new(p: nn::Path, name: &str, in_dim: i64, c: &DebertaConfig, f: &dyn LinearFactory) -> Self {
        let dense = f.linear(&p / "dense", &format!("{name}.dense"), in_dim, c.hidden_size);
        let layer_norm = layer_norm(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps);
        ResidualOutput { dense, layer_norm, dropout: c.hidden_dropout_prob }
    }

    fn forward_t(&self, xs: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        let ys = self.dense.forward_t(xs, train).dropout(self.dropout, train);
        self.layer_norm.forward(&(ys + residual))
    }
}

#[derive(Debug)]
struct Layer {
    attention: SelfAttention,
    attention_output: ResidualOutput,
    intermediate: Box<dyn LinearLayer>,
    output: ResidualOutput,
    act: String,
}

impl Layer {
    fn new(p: nn::Path, name: &str, c: &DebertaConfig, f: &dyn LinearFactory) -> Self {
        let att = &p / "attention";
        Layer {
            attention: SelfAttention::new(&att / "self", &format!("{name}.attention.self"), c, f),
            attention_output: ResidualOutput::new(&att / "output", &format!("{name}.attention.output"), c.hidden_size, c, f),
            intermediate: f.linear(
                &p / "intermediate" / "dense",
                &format!("{name}.intermediate.dense"),
                c.hidden_size,
                c.intermediate_size,
            ),
            output: ResidualOutput::new(&p / "output", &format!("{name}.output"), c.intermediate_size, c, f),
            act: c.hidden_act.clone(),
        }
    }

    fn forward_t(&self, hs: &Tensor, mask: &Tensor, rel: Option<&Relative>, train: bool) -> Tensor {
        let ctx = self.attention.forward_t(hs, mask, rel, train);
        let att_out = self.attention_output.forward_t(&ctx, hs, train);
        let inter = activation(&self.act, &self.intermediate.forward_t(&att_out, train));
        self.output.forward_t(&inter, &att_out, train)
    }
}

/// DeBERTa-v2-xlarge's `ConvLayer` (`encoder.conv`): a 1-D convolution over the encoder's input
/// (the embeddings), zero at padded positions, activation after dropout, added to layer 0's
/// output, LayerNorm, then padded positions zeroed. Its output replaces layer 0's.
#[derive(Debug)]
struct ConvLayer {
    conv: nn::Conv1D,
    layer_norm: nn::LayerNorm,
    act: String,
    dropout: f64,
}

impl ConvLayer {
    fn new(p: nn::Path, c: &DebertaConfig) -> Self {
        let k = c.conv_kernel_size;
        let cfg = nn::ConvConfig { padding: (k - 1) / 2, groups: c.conv_groups, ..Default::default() };
        ConvLayer {
            conv: nn::conv1d(&p / "conv", c.hidden_size, c.hidden_size, k, cfg),
            layer_norm: layer_norm(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            act: c.conv_act.clone(),
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `embedded` and `residual` are [batch, len, hidden]; `attention_mask` [batch, len] of 0/1.
    fn forward_t(&self, embedded: &Tensor, residual: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let out = self.conv.forward(&embedded.permute([0, 2, 1])).permute([0, 2, 1]);
        let out = out.masked_fill(&attention_mask.eq(0).unsqueeze(-1), 0.0);
        let out = activation(&self.act, &out.dropout(self.dropout, train));
        let sum = residual + out;
        let normed = self.layer_norm.forward(&sum).to_kind(sum.kind());
        let keep = attention_mask.unsqueeze(2).to_kind(normed.kind());
        normed * keep
    }
}

/// `DebertaV2Model`: embeddings and the relative-attention encoder.
#[derive(Debug)]
pub struct Backbone {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    rel_embeddings: Option<Tensor>,
    rel_layer_norm: Option<nn::LayerNorm>,
    conv: Option<ConvLayer>,
    position_buckets: i64,
    max_relative_positions: i64,
    /// Index tables of the sequence lengths seen so far.
    relative_cache: RelativeCache,
}

impl Backbone {
    /// `p` is the model's `deberta` path; `prefix` its HF name (`"deberta"`).
    pub fn new(p: nn::Path, prefix: &str, c: &DebertaConfig, f: &dyn LinearFactory) -> Self {
        let enc = &p / "encoder";
        let layers =
            (0..c.num_hidden_layers).map(|i| Layer::new(&enc / "layer" / i, &format!("{prefix}.encoder.layer.{i}"), c, f)).collect();
        let rel_embeddings = c.relative_attention.then(|| {
            let init = nn::Init::Randn { mean: 0.0, stdev: c.initializer_range };
            (&enc / "rel_embeddings").var("weight", &[2 * c.att_span(), c.hidden_size], init)
        });
        let rel_layer_norm =
            (c.relative_attention && c.norm_rel_layer_norm()).then(|| layer_norm(&enc / "LayerNorm", c.hidden_size, c.layer_norm_eps));
        let conv = (c.conv_kernel_size > 0).then(|| ConvLayer::new(&enc / "conv", c));
        Backbone {
            embeddings: Embeddings::new(&p / "embeddings", c),
            layers,
            rel_embeddings,
            rel_layer_norm,
            conv,
            position_buckets: c.position_buckets,
            max_relative_positions: c.max_relative_positions(),
            relative_cache: Default::default(),
        }
    }

    /// Last hidden state [batch, len, hidden]. `attention_mask` is [batch, len] of 0/1.
    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: &Tensor, train: bool) -> Tensor {
        let mut hs = self.embeddings.forward_t(input_ids, token_type_ids, attention_mask, train);
        let ext = attention_mask.unsqueeze(1).unsqueeze(2); // [b,1,1,l]
        let mask = (&ext * ext.squeeze_dim(-2).unsqueeze(-1)).to_kind(Kind::Bool); // [b,1,l,l]
        let len = input_ids.size()[1];
        let rel = self.rel_embeddings.as_ref().map(|w| {
            let emb = match &self.rel_layer_norm {
                Some(ln) => ln.forward(w),
                None => w.shallow_clone(),
            };
            let span = w.size()[0] / 2;
            Relative::new(emb, len, span, self.position_buckets, self.max_relative_positions, input_ids.device(), &self.relative_cache)
        });
        let embedded = hs.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            hs = layer.forward_t(&hs, &mask, rel.as_ref(), train);
            if let (0, Some(conv)) = (i, &self.conv) {
                hs = conv.forward_t(&embedded, &hs, attention_mask, train);
            }
        }
        hs
    }
}

/// torch.finfo(kind).min for the floating kinds attention scores can have.
pub fn dtype_min(kind: Kind) -> f64 {
    match kind {
        Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        Kind::Half => -65504.0,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}

#[cfg(test)]
mod dtype_tests {
    use super::*;

    /// torch.finfo(torch.bfloat16).min = -3.3895e38 fits a bf16 score tensor (f32::MIN does not:
    /// LibTorch refuses it with "value cannot be converted ... without overflow").
    #[test]
    fn masked_fill_uses_the_scores_own_minimum() {
        let scores = Tensor::zeros([2, 2], (Kind::BFloat16, tch::Device::Cpu));
        let mask = Tensor::from_slice(&[true, false, true, true]).view([2, 2]);
        let filled = scores.masked_fill(&mask.logical_not(), dtype_min(Kind::BFloat16));
        let v = f32::try_from(filled.to_kind(Kind::Float).get(0).get(1)).unwrap();
        assert_eq!(v as f64, -3.389_531_389_251_535_5e38);
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scores.f_masked_fill(&mask.logical_not(), f32::MIN as f64)));
        assert!(!matches!(refused, Ok(Ok(_))), "f32::MIN into bf16 should be refused");
        assert_eq!(dtype_min(Kind::Float), f32::MIN as f64);
    }
}
