// minGRU's and minLSTM's recurrence h_t = a_t h_{t-1} + b_t, with a_t and b_t computed from the
// pre-activations k_t in the same pass, and its backward (the adjoint run backwards in time):
//
//   minGRU   z = σ(k_z), a = 1 - z, b = z g(k_h)
//            dk_z = lam z (1 - z) (g - h_{t-1}),  dk_h = lam z g'(k_h)
//   minLSTM  f = σ(k_f), i = σ(k_i), s = f + i, a = f / s, b = (i / s) g(k_h)
//            dk_f = lam f (1 - f) i / s² (h_{t-1} - g),  dk_i = -lam f i (1 - i) / s² (h_{t-1} - g),
//            dk_h = lam (i / s) g'(k_h)
//   g(v) = v + 1/2 (v >= 0) or σ(v),  g'(v) = 1 or σ(v)(1 - σ(v));   lam_{t-1} = a_t lam_t
//
// On a CPU one pass over T steps of B*H elements is bound by memory, not by the dependence along
// time, so it beats the parallel scan of unrolled/engines/scan.py (log T levels of cumulative
// sums and exponentials, in log space) by far; on a GPU the parallel scan is the one to use.
// Rows past their end (mask) keep their state and output zero, as in the reference loop.
// The forward also keeps h_{t-1} of every step (T, B, H) for the backward.
#include "common.h"

namespace unrolled {

namespace {

template <typename T>
inline T cand(T v, T s) { return v >= T(0) ? v + T(0.5) : s; }  // g(v) given s = σ(v)
template <typename T>
inline T cand_grad(T v, T s) { return v >= T(0) ? T(1) : s * (T(1) - s); }

// One row's gradients, each loop on restrict pointers so that the compiler vectorises it.
template <typename T>
void gru_row_grad(int64_t H, const T* z_, const T* gv, const T* gd, const T* hp, T* __restrict dz, T* __restrict dh,
                  T* __restrict lam) {
  for (int64_t j = 0; j < H; ++j) {
    const T z = z_[j];
    dz[j] = lam[j] * z * (T(1) - z) * (gv[j] - hp[j]);
    dh[j] = lam[j] * z * gd[j];
    lam[j] *= T(1) - z;
  }
}

template <typename T>
void lstm_row_grad(int64_t H, const T* f_, const T* i_, const T* gv, const T* hp, T* __restrict df,
                   T* __restrict di, T* __restrict gd, T* __restrict lam) {
  for (int64_t j = 0; j < H; ++j) {
    const T f = f_[j], i = i_[j], s = f + i;
    const T diff = (hp[j] - gv[j]) / (s * s);
    df[j] = lam[j] * f * (T(1) - f) * i * diff;
    di[j] = -lam[j] * f * i * (T(1) - i) * diff;
    gd[j] *= lam[j] * i / s;  // now dk_h
    lam[j] *= f / s;
  }
}

// a and b of one row (H units) from its pre-activations k (G*H); work is 2H scratch.
template <typename T>
void coefficients(bool gru, const T* k, int64_t H, T* a, T* b, T* work) {
  T* sh = work;  // σ(k_h)
  std::copy(k + (gru ? H : 2 * H), k + (gru ? 2 * H : 3 * H), sh);
  sigmoid_rows(sh, H);
  const T* kh = k + (gru ? H : 2 * H);
  if (gru) {
    std::copy(k, k + H, a);
    sigmoid_rows(a, H);  // z
    for (int64_t j = 0; j < H; ++j) {
      b[j] = a[j] * cand(kh[j], sh[j]);
      a[j] = T(1) - a[j];
    }
  } else {
    T* si = work + H;
    std::copy(k, k + H, a);
    sigmoid_rows(a, H);  // f
    std::copy(k + H, k + 2 * H, si);
    sigmoid_rows(si, H);  // i
    for (int64_t j = 0; j < H; ++j) {
      const T s = a[j] + si[j];
      b[j] = si[j] / s * cand(kh[j], sh[j]);
      a[j] = a[j] / s;
    }
  }
}

template <typename T>
void forward_impl(bool gru, bool reverse, const T* k, const T* h0, const bool* mask, T* out, T* h_in, T* hn,
                  int64_t Tn, int64_t B, int64_t H) {
  const int64_t G = gru ? 2 : 3;
  std::vector<T> buf(4 * H);
  T *a = buf.data(), *b = a + H, *work = b + H;
  std::copy(h0, h0 + B * H, hn);
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    std::copy(hn, hn + B * H, h_in + t * B * H);
    for (int64_t r = 0; r < B; ++r) {
      T* o = out + (t * B + r) * H;
      T* h = hn + r * H;
      if (mask != nullptr && !mask[t * B + r]) {
        std::fill(o, o + H, T(0));
        continue;
      }
      coefficients(gru, k + (t * B + r) * G * H, H, a, b, work);
      for (int64_t j = 0; j < H; ++j) {
        h[j] = a[j] * h[j] + b[j];
        o[j] = h[j];
      }
    }
  }
}

// lam (B, H) starts as the final state's gradient and ends as h0's; h_in (T, B, H) holds the
// state before each step, as the forward saved it.
template <typename T>
void backward_impl(bool gru, bool reverse, const T* k, const bool* mask, const T* h_in, const T* d_out, T* lam_all,
                   T* dk, int64_t Tn, int64_t B, int64_t H) {
  const int64_t G = gru ? 2 : 3;
  std::vector<T> buf(4 * H);
  T *sz = buf.data(), *si = sz + H, *gv = si + H, *gd = gv + H;
  for (int64_t step = Tn - 1; step >= 0; --step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    for (int64_t r = 0; r < B; ++r) {
      T* dkr = dk + (t * B + r) * G * H;
      if (mask != nullptr && !mask[t * B + r]) {  // past the row's end: the state passes through
        std::fill(dkr, dkr + G * H, T(0));
        continue;
      }
      T* lam = lam_all + r * H;
      const T* go = d_out + (t * B + r) * H;
      const T* hp = h_in + (t * B + r) * H;
      const T* kr = k + (t * B + r) * G * H;
      const T* kh = kr + (G - 1) * H;
      for (int64_t j = 0; j < H; ++j) lam[j] += go[j];
      std::copy(kh, kh + H, gv);
      sigmoid_rows(gv, H);
      for (int64_t j = 0; j < H; ++j) {  // g(k_h) and g'(k_h)
        const T sg = gv[j];
        gd[j] = cand_grad(kh[j], sg);
        gv[j] = cand(kh[j], sg);
      }
      std::copy(kr, kr + H, sz);
      sigmoid_rows(sz, H);  // z (minGRU) or f (minLSTM)
      if (gru) {
        gru_row_grad(H, sz, gv, gd, hp, dkr, dkr + H, lam);
      } else {
        std::copy(kr + H, kr + 2 * H, si);
        sigmoid_rows(si, H);
        lstm_row_grad(H, sz, si, gv, hp, dkr, dkr + H, gd, lam);
        std::copy(gd, gd + H, dkr + 2 * H);
      }
    }
  }
}

}  // namespace

// (out (T, B, H), h_n (B, H)) from k (T, B, G*H) and h0 (B, H); G = 2 (minGRU) or 3 (minLSTM).
// Also returns h_in (T, B, H), the state before each step, for the backward.
std::vector<Tensor> min_forward(const Tensor& k_in, const Tensor& h0_in, const OptTensor& mask_in, bool gru,
                                bool reverse) {
  Tensor k = k_in.contiguous(), h0 = h0_in.contiguous();
  OptTensor mask = contiguous(mask_in);
  const int64_t Tn = k.size(0), B = k.size(1), H = h0.size(1);
  Tensor out = at::empty({Tn, B, H}, k.options()), h_in = at::empty({Tn, B, H}, k.options());
  Tensor hn = at::empty_like(h0);
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "min_forward", [&] {
    forward_impl<scalar_t>(gru, reverse, k.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(),
                           mask.has_value() ? mask->data_ptr<bool>() : nullptr, out.data_ptr<scalar_t>(),
                           h_in.data_ptr<scalar_t>(), hn.data_ptr<scalar_t>(), Tn, B, H);
  });
  return {out, hn, h_in};
}

// (dk, dh0) from the gradients of out and h_n.
std::vector<Tensor> min_backward(const Tensor& k_in, const OptTensor& mask_in, const Tensor& h_in,
                                 const Tensor& d_out_in, const Tensor& d_hn, bool gru, bool reverse) {
  Tensor k = k_in.contiguous(), d_out = d_out_in.contiguous();
  OptTensor mask = contiguous(mask_in);
  const int64_t Tn = k.size(0), B = k.size(1), H = h_in.size(2);
  Tensor dk = at::empty_like(k), lam = d_hn.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "min_backward", [&] {
    backward_impl<scalar_t>(gru, reverse, k.data_ptr<scalar_t>(), mask.has_value() ? mask->data_ptr<bool>() : nullptr,
                            h_in.data_ptr<scalar_t>(), d_out.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(),
                            dk.data_ptr<scalar_t>(), Tn, B, H);
  });
  return {dk, lam};
}

}  // namespace unrolled
