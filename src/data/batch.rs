//! Tokenised examples and padded batches: dynamic padding to the longest sequence of a batch,
//! and a seeded shuffle per epoch so that runs repeat exactly.

use tch::{Device, Kind, Tensor};

use super::glue::{Example, Label};
use super::tokenizer::SpmTokenizer;

/// One batch on the model's device. Labels: class ids (int64), regression targets (float), or
/// for QA a [batch, 2] tensor of start and end positions.
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    pub labels: Tensor,
}

/// One tokenised example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub label: Label,
}

pub fn encode_all(tok: &SpmTokenizer, examples: &[Example], max_len: usize) -> Vec<Encoded> {
    examples
        .iter()
        .map(|e| {
            let enc = tok.encode(&e.text_a, e.text_b.as_deref(), max_len, false);
            Encoded { input_ids: enc.input_ids, token_type_ids: enc.token_type_ids, label: e.label }
        })
        .collect()
}

/// A host tensor on `device`: to a GPU through pinned memory with a non-blocking copy (the host
/// goes on building the next batch while it travels); on the CPU as it is.
fn to_device_async(t: Tensor, device: Device) -> Tensor {
    if device.is_cuda() {
        let kind = t.kind();
        t.pin_memory(device).to_device_(device, kind, true, false)
    } else {
        t
    }
}

/// A padded batch of the examples at `indices`, on `device`.
pub fn make_batch(examples: &[Encoded], indices: &[usize], pad_id: i64, device: Device) -> Batch {
    let len = indices.iter().map(|&i| examples[i].input_ids.len()).max().unwrap_or(1);
    let n = indices.len();
    let mut ids = vec![pad_id; n * len];
    let mut types = vec![0i64; n * len];
    let mut mask = vec![0i64; n * len];
    for (row, &i) in indices.iter().enumerate() {
        let e = &examples[i];
        let base = row * len;
        ids[base..base + e.input_ids.len()].copy_from_slice(&e.input_ids);
        types[base..base + e.token_type_ids.len()].copy_from_slice(&e.token_type_ids);
        mask[base..base + e.input_ids.len()].fill(1);
    }
    let t = |v: Vec<i64>| to_device_async(Tensor::from_slice(&v).view([n as i64, len as i64]), device);
    let labels = match examples.get(indices.first().copied().unwrap_or(0)).map(|e| e.label) {
        Some(Label::Score(_)) => {
            let v: Vec<f32> = indices
                .iter()
                .map(|&i| match examples[i].label {
                    Label::Score(s) => s,
                    Label::Class(c) => c as f32,
                })
                .collect();
            to_device_async(Tensor::from_slice(&v), device)
        }
        _ => {
            let v: Vec<i64> = indices
                .iter()
                .map(|&i| match examples[i].label {
                    Label::Class(c) => c,
                    Label::Score(s) => s as i64,
                })
                .collect();
            to_device_async(Tensor::from_slice(&v).to_kind(Kind::Int64), device)
        }
    };
    Batch { input_ids: t(ids), attention_mask: t(mask), token_type_ids: t(types), labels }
}

/// SplitMix64: a tiny, fully specified generator, so the data order never depends on a
/// library's RNG version.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The example order of `epoch`: a Fisher-Yates shuffle seeded by (seed, epoch).
pub fn epoch_order(n: usize, seed: i64, epoch: usize) -> Vec<usize> {
    let mut state = (seed as u64) ^ ((epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 42, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 42, 0));
        assert_ne!(a, epoch_order(50, 42, 1));
        assert_ne!(a, epoch_order(50, 43, 0));
    }

    #[test]
    fn batches_pad_to_the_longest_row() {
        let ex = vec![
            Encoded { input_ids: vec![1, 5, 2], token_type_ids: vec![0, 0, 0], label: Label::Class(1) },
            Encoded { input_ids: vec![1, 2], token_type_ids: vec![0, 0], label: Label::Class(0) },
        ];
        let b = make_batch(&ex, &[1, 0], 0, Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(b.input_ids.flatten(0, -1)).unwrap(), vec![1, 2, 0, 1, 5, 2]);
        assert_eq!(Vec::<i64>::try_from(b.attention_mask.flatten(0, -1)).unwrap(), vec![1, 1, 0, 1, 1, 1]);
        assert_eq!(Vec::<i64>::try_from(b.labels).unwrap(), vec![0, 1]);
    }
}
