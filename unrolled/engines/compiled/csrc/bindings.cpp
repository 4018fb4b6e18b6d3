// The Python bindings of the compiled time loops (unrolled.engines.compiled loads this module).
#include <torch/extension.h>

#include "common.h"

namespace unrolled {
std::vector<Tensor> lstm_forward(Tensor, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                 const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                 const OptTensor&, const OptTensor&, Tensor, Tensor, Tensor, const OptTensor&,
                                 const OptTensor&, Tensor, const OptTensor&, const OptTensor&, Tensor,
                                 const OptTensor&, const std::vector<int64_t>&, const std::vector<int64_t>&,
                                 const std::vector<int64_t>&, bool, bool, bool, bool);
std::vector<Tensor> lstm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                  const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                  const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                  const OptTensor&, const OptTensor&, const Tensor&, Tensor, Tensor,
                                  const OptTensor&, const std::vector<int64_t>&,
                                  const std::vector<int64_t>&, const std::vector<int64_t>&, bool, bool, bool,
                                  bool);
std::vector<Tensor> gru_forward(Tensor, const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                                const OptTensor&, const OptTensor&, const OptTensor&, Tensor, Tensor, Tensor,
                                const OptTensor&, Tensor, bool, bool);
std::vector<Tensor> gru_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                 const OptTensor&, const OptTensor&, const Tensor&, Tensor, Tensor,
                                 const OptTensor&, bool, bool);
std::vector<Tensor> elman_forward(Tensor, const Tensor&, const Tensor&, const OptTensor&, Tensor, Tensor, bool,
                                  bool);
std::vector<Tensor> elman_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   const OptTensor&, Tensor, bool, bool);
std::vector<Tensor> mut_forward(Tensor, const Tensor&, const Tensor&, const OptTensor&, Tensor, Tensor,
                                const OptTensor&, Tensor, int64_t, bool);
std::vector<Tensor> mut_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                 const Tensor&, const OptTensor&, Tensor, int64_t, bool);
int64_t set_gemm_backend(int64_t);
void set_gemm_choice_file(const std::string&);
std::vector<std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, int64_t, bool, int64_t>> gemm_choices();
std::string onednn_error();
std::vector<Tensor> min_forward(const Tensor&, const Tensor&, const OptTensor&, bool, bool);
std::vector<Tensor> min_backward(const Tensor&, const OptTensor&, const Tensor&, const Tensor&, const Tensor&, bool,
                                 bool);
}  // namespace unrolled

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "unrolled's compiled time loops (forward and backward of each cell family)";
  m.def("lstm_forward", &unrolled::lstm_forward);
  m.def("lstm_backward", &unrolled::lstm_backward);
  m.def("gru_forward", &unrolled::gru_forward);
  m.def("gru_backward", &unrolled::gru_backward);
  m.def("elman_forward", &unrolled::elman_forward);
  m.def("elman_backward", &unrolled::elman_backward);
  m.def("mut_forward", &unrolled::mut_forward);
  m.def("mut_backward", &unrolled::mut_backward);
  m.def("min_forward", &unrolled::min_forward);
  m.def("min_backward", &unrolled::min_backward);
  m.def("gemm", &unrolled::gemm);
  m.def("set_gemm_backend", &unrolled::set_gemm_backend);
  m.def("set_gemm_choice_file", &unrolled::set_gemm_choice_file);
  m.def("gemm_choices", &unrolled::gemm_choices);
  m.def("onednn_error", &unrolled::onednn_error);
}
