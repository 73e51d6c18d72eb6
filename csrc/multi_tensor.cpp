// Multi-tensor ATen ops that tch does not wrap. One call is one op (`aten::_foreach_norm`), as
// torch.nn.utils.clip_grad_norm_ issues it: on CUDA a single launch over every tensor, on CPU a
// per-tensor loop of the same `linalg_vector_norm` a single tensor's norm runs.
#include <ATen/ATen.h>

#include <cstddef>
#include <vector>

extern "C" {

// The L2 norms of `n` tensors, stacked into one new 1-D tensor (returned as a heap-allocated
// at::Tensor the caller owns, as tch's C_tensor), or nullptr if ATen threw.
at::Tensor* triadapt_stacked_l2_norms(const at::Tensor* const* tensors, size_t n) {
  try {
    std::vector<at::Tensor> list;
    list.reserve(n);
    for (size_t i = 0; i < n; ++i) list.push_back(*tensors[i]);
    return new at::Tensor(at::stack(at::_foreach_norm(list, 2), 0));
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
