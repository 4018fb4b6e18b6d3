// The Elman RNN's and MUT1-3's time loops, forward and backward: the steps of
// unrolled/engines/fused/elman.py and mut.py, one or two GEMMs and raw pointwise loops per step.
#include "common.h"

namespace unrolled {

namespace {

template <typename T>
void elman_forward_impl(bool relu, bool reverse, Tensor hs, Tensor h, const Tensor& w_hh,
                        const OptTensor& mask, Tensor h_in, Tensor out) {
  const int64_t Tn = hs.size(0), B = hs.size(1), H = hs.size(2);
  const Tensor w_t = w_hh.t();
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  T* h_p = h.data_ptr<T>();
  const StepGemm recur(w_t, B, true, Tn);
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    std::copy(h_p, h_p + B * H, h_in.data_ptr<T>() + t * B * H);
    Tensor pre = hs[t];
    recur(pre, h);
    T* v = pre.data_ptr<T>();
    if (relu) {
      for (int64_t k = 0; k < B * H; ++k) v[k] = v[k] > T(0) ? v[k] : T(0);
    } else {
      tanh_rows(v, B * H);
    }
    finish_step<T>(v, h_p, out.data_ptr<T>() + t * B * H, nullptr,
                   mask_p == nullptr ? nullptr : mask_p + t * B, B, H);
  }
}

template <typename T>
void elman_backward_impl(bool relu, bool reverse, const Tensor& hs, const Tensor& d_out, Tensor dh_state,
                         const Tensor& w_hh, const OptTensor& mask, Tensor d_pre) {
  const int64_t Tn = hs.size(0), B = hs.size(1), H = hs.size(2);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  T* dhs_p = dh_state.data_ptr<T>();
  Tensor dh_prev = at::empty({B, H}, hs.options());  // the per-step GEMM's output
  const StepGemm recur(w_hh, B, false, Tn);
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? step : Tn - 1 - step;
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    T* d = d_pre.data_ptr<T>() + t * B * H;
    start_grad<T>(dhs_p, d_out.data_ptr<T>() + t * B * H, live, nullptr, d, nullptr, B, H);
    const T* h = hs.data_ptr<T>() + t * B * H;
    for (int64_t k = 0; k < B * H; ++k) d[k] *= relu ? T(h[k] > T(0)) : T(1) - h[k] * h[k];
    recur(dh_prev, d_pre[t]);
    end_grad<T>(dh_prev.data_ptr<T>(), nullptr, nullptr, live, dhs_p, B, H);
  }
}

template <typename T>
void mut_forward_impl(int64_t arch, bool reverse, Tensor acts, Tensor h, const Tensor& w_hh,
                      const OptTensor& mask, Tensor h_in, Tensor rh_in, const OptTensor& th_in, Tensor out) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = h.size(1);
  const Tensor w_t = w_hh.t();
  const Tensor w_gates_t = w_t.narrow(1, 0, w_t.size(1) - H), w_n_t = w_t.narrow(1, w_t.size(1) - H, H);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  Tensor h_new = at::empty({B, H}, acts.options());
  T* h_p = h.data_ptr<T>();
  T* hn_p = h_new.data_ptr<T>();
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    std::copy(h_p, h_p + B * H, h_in.data_ptr<T>() + t * B * H);
    T* a0 = acts.data_ptr<T>() + t * B * 3 * H;
    Tensor gz, gr;  // the state's terms of z and r, (B, H) each
    if (arch == 1) {
      gr = at::mm(h, w_gates_t);
    } else if (arch == 2) {
      Tensor g = at::mm(h, w_gates_t);
      gz = g.narrow(1, 0, H).contiguous();
      gr = g.narrow(1, H, H).contiguous();
    } else {
      Tensor th = (*th_in)[t];
      T* thp = th.data_ptr<T>();
      for (int64_t k = 0; k < B * H; ++k) thp[k] = tanh_(h_p[k]);
      gz = at::mm(th, w_gates_t.narrow(1, 0, H));
      gr = at::mm(h, w_gates_t.narrow(1, H, H));
    }
    T* rh0 = rh_in.data_ptr<T>() + t * B * H;
    for (int64_t b = 0; b < B; ++b) {
      T* z = a0 + b * 3 * H;
      T* r = z + H;
      if (arch != 1) {
        const T* g = gz.data_ptr<T>() + b * H;
        for (int64_t j = 0; j < H; ++j) z[j] = sigmoid(z[j] + g[j]);
      }
      const T* g = gr.data_ptr<T>() + b * H;
      const T* hb = h_p + b * H;
      T* rh = rh0 + b * H;
      for (int64_t j = 0; j < H; ++j) {
        r[j] = sigmoid(r[j] + g[j]);
        rh[j] = r[j] * hb[j];
      }
    }
    Tensor qn = at::mm(rh_in[t], w_n_t);
    const T* qn0 = qn.data_ptr<T>();
    for (int64_t b = 0; b < B; ++b) {
      T* z = a0 + b * 3 * H;
      T* n = z + 2 * H;
      const T* q = qn0 + b * H;
      const T* hb = h_p + b * H;
      T* hn = hn_p + b * H;
      for (int64_t j = 0; j < H; ++j) {
        n[j] = tanh_(n[j] + q[j]);
        hn[j] = hb[j] + z[j] * (n[j] - hb[j]);
      }
    }
    finish_step<T>(hn_p, h_p, out.data_ptr<T>() + t * B * H, nullptr,
                   mask_p == nullptr ? nullptr : mask_p + t * B, B, H);
  }
}

template <typename T>
void mut_backward_impl(int64_t arch, bool reverse, const Tensor& acts, const Tensor& d_out, Tensor dh_state,
                       const Tensor& h_in, const OptTensor& th_in, const Tensor& w_hh, const OptTensor& mask,
                       Tensor d_acts) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = h_in.size(2);
  const Tensor w_gates = w_hh.narrow(0, 0, w_hh.size(0) - H), w_n = w_hh.narrow(0, w_hh.size(0) - H, H);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  auto opts = acts.options();
  Tensor dh = at::empty({B, H}, opts), dh_prev = at::empty({B, H}, opts);
  T* dh_p = dh.data_ptr<T>();
  T* dhp_p = dh_prev.data_ptr<T>();
  T* dhs_p = dh_state.data_ptr<T>();
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? step : Tn - 1 - step;
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    start_grad<T>(dhs_p, d_out.data_ptr<T>() + t * B * H, live, nullptr, dh_p, nullptr, B, H);
    const T* a0 = acts.data_ptr<T>() + t * B * 3 * H;
    T* da0 = d_acts.data_ptr<T>() + t * B * 3 * H;
    const T* hin0 = h_in.data_ptr<T>() + t * B * H;
    for (int64_t b = 0; b < B; ++b) {
      const T* z = a0 + b * 3 * H;
      const T* n = z + 2 * H;
      T* dz = da0 + b * 3 * H;
      T* dn = dz + 2 * H;
      const T* hp = hin0 + b * H;
      const T* g = dh_p + b * H;
      T* dhp = dhp_p + b * H;
      for (int64_t j = 0; j < H; ++j) {
        dz[j] = g[j] * (n[j] - hp[j]) * z[j] * (T(1) - z[j]);
        dn[j] = g[j] * z[j] * (T(1) - n[j] * n[j]);
        dhp[j] = g[j] * (T(1) - z[j]);
      }
    }
    Tensor da_t = d_acts[t];
    Tensor d_rh = at::mm(da_t.narrow(1, 2 * H, H), w_n);
    const T* drh0 = d_rh.data_ptr<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T* r = a0 + b * 3 * H + H;
      T* dr = da0 + b * 3 * H + H;
      const T* hp = hin0 + b * H;
      const T* drh = drh0 + b * H;
      T* dhp = dhp_p + b * H;
      for (int64_t j = 0; j < H; ++j) {
        dr[j] = drh[j] * hp[j] * r[j] * (T(1) - r[j]);
        dhp[j] += drh[j] * r[j];
      }
    }
    if (arch == 2) {
      dh_prev.addmm_(da_t.narrow(1, 0, 2 * H), w_gates);
    } else {
      dh_prev.addmm_(da_t.narrow(1, H, H), w_gates.narrow(0, w_gates.size(0) - H, H));
      if (arch == 3) {
        Tensor dzw = at::mm(da_t.narrow(1, 0, H), w_gates.narrow(0, 0, H));
        const T* q = dzw.data_ptr<T>();
        const T* th = th_in->data_ptr<T>() + t * B * H;
        for (int64_t k = 0; k < B * H; ++k) dhp_p[k] += q[k] * (T(1) - th[k] * th[k]);
      }
    }
    end_grad<T>(dhp_p, nullptr, nullptr, live, dhs_p, B, H);
  }
}

}  // namespace

std::vector<Tensor> elman_forward(Tensor hs, const Tensor& h0, const Tensor& w_hh, const OptTensor& mask,
                                  Tensor h_in, Tensor out, bool relu, bool reverse) {
  TORCH_CHECK(hs.is_contiguous() && out.is_contiguous(), "elman loop: buffers must be contiguous");
  Tensor h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "elman_forward", [&] {
    elman_forward_impl<scalar_t>(relu, reverse, hs, h, w_hh, contiguous(mask), h_in, out);
  });
  return {h};
}

std::vector<Tensor> elman_backward(const Tensor& hs, const Tensor& d_out, const Tensor& d_h, const Tensor& w_hh,
                                   const OptTensor& mask, Tensor d_pre, bool relu, bool reverse) {
  Tensor dh = d_h.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "elman_backward", [&] {
    elman_backward_impl<scalar_t>(relu, reverse, hs, d_out.contiguous(), dh, w_hh, contiguous(mask), d_pre);
  });
  return {dh};
}

std::vector<Tensor> mut_forward(Tensor acts, const Tensor& h0, const Tensor& w_hh, const OptTensor& mask,
                                Tensor h_in, Tensor rh_in, const OptTensor& th_in, Tensor out, int64_t arch,
                                bool reverse) {
  TORCH_CHECK(acts.is_contiguous() && out.is_contiguous(), "mut loop: buffers must be contiguous");
  Tensor h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "mut_forward", [&] {
    mut_forward_impl<scalar_t>(arch, reverse, acts, h, w_hh, contiguous(mask), h_in, rh_in, th_in, out);
  });
  return {h};
}

std::vector<Tensor> mut_backward(const Tensor& acts, const Tensor& d_out, const Tensor& d_h, const Tensor& h_in,
                                 const OptTensor& th_in, const Tensor& w_hh, const OptTensor& mask,
                                 Tensor d_acts, int64_t arch, bool reverse) {
  Tensor dh = d_h.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "mut_backward", [&] {
    mut_backward_impl<scalar_t>(arch, reverse, acts, d_out.contiguous(), dh, h_in, th_in, w_hh, contiguous(mask),
                                d_acts);
  });
  return {dh};
}

}  // namespace unrolled
