// What every compiled time loop shares: vectorisable sigmoid and tanh, and the end of a step
// (zoneout, the variable-length mask, the output row, the carried state).
//
// The pointwise math runs as plain loops over raw rows, written so that the compiler vectorises
// them (built with -O3 and, where the CPU has them, AVX2 and FMA). float uses its own exp: range
// reduction exp(x) = 2^n e^r with |r| <= ln2 / 2 and a degree-7 Taylor polynomial, whose
// truncation error r^8 / 8! < 6e-9 lies under float's resolution; glibc's expf is a call the
// compiler does not vectorise. double uses the C library (the precision checks run in double).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace unrolled {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);  // 2^n stays a normal float: -126 <= n <= 127
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln 2 in two parts (Cody-Waite)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline float tanh_(float x) { return 1.0f - 2.0f / (1.0f + exp_approx(2.0f * x)); }
inline double tanh_(double x) { return std::tanh(x); }

// fn(b) for every row b < B (rows are independent within a step), split between torch's threads
// (its OpenMP pool: the extension is built with -fopenmp and shares torch's libgomp) when there
// are at least kRowWork elements per task; at batch 1 a plain loop.
constexpr int64_t kRowWork = 8192;

template <typename F>
inline void for_rows(int64_t B, int64_t width, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, kRowWork / std::max<int64_t>(width, 1));
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) fn(b);
  });
}

template <typename T>
inline void sigmoid_rows(T* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = sigmoid(v[j]);
}

template <typename T>
inline void tanh_rows(T* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = tanh_(v[j]);
}

// The (optional) pointer of a tensor; tensors handed in are contiguous (see contiguous()).
template <typename T>
inline T* ptr(const OptTensor& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

inline OptTensor contiguous(const OptTensor& t) {
  return t.has_value() ? OptTensor(t->contiguous()) : OptTensor();
}

// Step t's row pointer of a (T, B, N) tensor, or nullptr.
template <typename T>
inline T* at_step(T* base, int64_t t, int64_t rows, int64_t width) {
  return base == nullptr ? nullptr : base + t * rows * width;
}

// The end of a forward step for one state part of width n, for every row b:
//   zoned = new + k (old - new)            (zoneout keep mask k, or none)
//   out   = zoned where the row is live, 0 past its end (out may be null)
//   state = zoned where the row is live, unchanged past its end
template <typename T>
inline void finish_step(const T* fresh, T* state, T* out, const T* keep_mask, const bool* live,
                        int64_t B, int64_t n) {
  for (int64_t b = 0; b < B; ++b) {
    const T* f = fresh + b * n;
    T* s = state + b * n;
    const bool on = live == nullptr || live[b];
    if (out != nullptr) {
      T* o = out + b * n;
      if (keep_mask == nullptr) {
        for (int64_t j = 0; j < n; ++j) o[j] = on ? f[j] : T(0);
      } else {
        const T* k = keep_mask + b * n;
        for (int64_t j = 0; j < n; ++j) o[j] = on ? f[j] + k[j] * (s[j] - f[j]) : T(0);
      }
    }
    if (!on) continue;
    if (keep_mask == nullptr) {
      std::copy(f, f + n, s);
    } else {
      const T* k = keep_mask + b * n;
      for (int64_t j = 0; j < n; ++j) s[j] = f[j] + k[j] * (s[j] - f[j]);
    }
  }
}

// The start of a backward step for one state part of width n:
//   g = state gradient (+ the output's gradient at this step), zero on rows past their end;
//   with zoneout, kept = g k goes straight to the previous state and g becomes g (1 - k).
template <typename T>
inline void start_grad(const T* state, const T* d_out, const bool* live, const T* keep_mask, T* g,
                       T* kept, int64_t B, int64_t n) {
  for (int64_t b = 0; b < B; ++b) {
    const bool on = live == nullptr || live[b];
    T* gb = g + b * n;
    const T* sb = state + b * n;
    if (!on) {
      std::fill(gb, gb + n, T(0));
    } else if (d_out != nullptr) {
      const T* ob = d_out + b * n;
      for (int64_t j = 0; j < n; ++j) gb[j] = sb[j] + ob[j];
    } else {
      std::copy(sb, sb + n, gb);
    }
    if (keep_mask != nullptr) {
      const T* k = keep_mask + b * n;
      T* kb = kept + b * n;
      for (int64_t j = 0; j < n; ++j) {
        kb[j] = gb[j] * k[j];
        gb[j] -= kb[j];
      }
    }
  }
}

// The end of a backward step: the previous state's gradient (times the recurrent dropout mask
// if given, plus the zoned-out part) on live rows; rows past their end keep theirs.
template <typename T>
inline void end_grad(const T* prev, const T* drop, const T* kept, const bool* live, T* state,
                     int64_t B, int64_t n) {
  for (int64_t b = 0; b < B; ++b) {
    if (live != nullptr && !live[b]) continue;
    const T* p = prev + b * n;
    T* s = state + b * n;
    const T* d = drop == nullptr ? nullptr : drop + b * n;
    const T* k = kept == nullptr ? nullptr : kept + b * n;
    for (int64_t j = 0; j < n; ++j) {
      T v = d == nullptr ? p[j] : p[j] * d[j];
      s[j] = k == nullptr ? v : v + k[j];
    }
  }
}

// The per-step GEMM (gemm.cpp): through ATen, oneDNN (plain, or on weights packed once per
// loop), MKL on weights packed once per loop, or plain loops for a few rows, whichever was
// measured fastest for the shape (kAuto), or as set_gemm_backend forces.
enum class GemmBackend : int64_t { kAuto = 0, kAten = 1, kOneDnn = 2, kRows = 3, kPacked = 4, kMklPacked = 5 };

// A loop's product with one matrix b (k, n) at every step, out (rows, n) (+)= a (rows, k) b:
// the kernel chosen once for the loop (and b packed once if the packed kernel is chosen).
class StepGemm {
 public:
  StepGemm(const Tensor& b, int64_t rows, bool accumulate, int64_t steps);
  void operator()(const Tensor& out, const Tensor& a) const;
  // out = bias + a b (bias broadcast over the rows; none: out = a b); accumulate must be false.
  void with_bias(const Tensor& out, const OptTensor& bias, const Tensor& a) const;

 private:
  void apply(const Tensor& out, const Tensor& a, bool accumulate) const;

  Tensor b_, packed_;  // packed_: b in oneDNN's or MKL's packed layout, for those kernels
  GemmBackend kernel_;
  int64_t rows_;  // the rows the loop's products have (MKL's packing is for them)
  bool accumulate_;
};

// out = a b, or out += a b: one product, its kernel chosen as a one-step loop's.
void gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate);

// Layer norm over the last dimension with torch's eps, as the cells compute it.
constexpr double kLayerNormEps = 1e-5;

// Sums with eight partial accumulators, which the compiler keeps in one vector register
// (a plain running sum is a dependency chain it may not reorder).
template <typename T, typename F>
inline T row_sum(int64_t n, F term) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += term(j + k);
  T s = 0;
  for (int k = 0; k < 8; ++k) s += acc[k];
  for (; j < n; ++j) s += term(j);
  return s;
}

// One row's layer norm: y = x̂ gain (+ bias) with x̂ = (x - mean) rstd, rstd = 1 / sqrt(var + eps)
// (biased variance, two passes). add: y is added to out instead of written. Returns mean, rstd.
template <typename T>
inline void norm_row(const T* x, int64_t n, const T* gain, const T* bias, T* out, bool add, T* mean_out,
                     T* rstd_out) {
  const T mean = row_sum<T>(n, [&](int64_t j) { return x[j]; }) / T(n);
  const T var = row_sum<T>(n, [&](int64_t j) { return (x[j] - mean) * (x[j] - mean); }) / T(n);
  const T rstd = T(1) / std::sqrt(var + T(kLayerNormEps));
  *mean_out = mean;
  *rstd_out = rstd;
  if (add) {
    for (int64_t j = 0; j < n; ++j) out[j] += (x[j] - mean) * rstd * gain[j];
  } else if (bias == nullptr) {
    for (int64_t j = 0; j < n; ++j) out[j] = (x[j] - mean) * rstd * gain[j];
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = (x[j] - mean) * rstd * gain[j] + bias[j];
  }
}

// The backward of norm_row for one row: dx = rstd (g - mean(g) - x̂ mean(g x̂)) with g = dy gain;
// adds dy x̂ to d_gain (and dy to d_bias if given). dx may alias dy.
template <typename T>
inline void norm_row_grad(const T* dy, const T* x, int64_t n, T mean, T rstd, const T* gain, T* dx, T* d_gain,
                          T* d_bias) {
  T g_acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, gx_acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // one pass, both sums
  int64_t j0 = 0;
  for (; j0 + 8 <= n; j0 += 8)
    for (int k = 0; k < 8; ++k) {
      const T g = dy[j0 + k] * gain[j0 + k];
      g_acc[k] += g;
      gx_acc[k] += g * (x[j0 + k] - mean);
    }
  T g_sum = 0, gx_sum = 0;
  for (int k = 0; k < 8; ++k) g_sum += g_acc[k], gx_sum += gx_acc[k];
  for (; j0 < n; ++j0) {
    const T g = dy[j0] * gain[j0];
    g_sum += g;
    gx_sum += g * (x[j0] - mean);
  }
  const T g_mean = g_sum / T(n), gx_mean = gx_sum * rstd / T(n);
  if (d_bias != nullptr) {
    for (int64_t j = 0; j < n; ++j) d_bias[j] += dy[j];
  }
  for (int64_t j = 0; j < n; ++j) {
    const T xhat = (x[j] - mean) * rstd;
    d_gain[j] += dy[j] * xhat;
    dx[j] = rstd * (dy[j] * gain[j] - g_mean - xhat * gx_mean);
  }
}

}  // namespace unrolled
