// The GRU's time loop (both forms), forward and backward: the steps of
// unrolled/engines/fused/gru.py, GEMMs and layer norms through ATen, the gate math as raw loops.
#include "common.h"

namespace unrolled {

namespace {

// v (B, N) @ w_t (+ b), or LN(v @ w_t) gain + b keeping the raw product in raw_out and the mean
// and rstd in stats[0], stats[1] (each (B, 1)).
Tensor product(const Tensor& v, const Tensor& w_t, const OptTensor& b, const OptTensor& gain,
               Tensor raw_out, Tensor stats0, Tensor stats1) {
  if (!gain.has_value()) return b.has_value() ? at::addmm(*b, v, w_t) : at::mm(v, w_t);
  Tensor raw = at::mm(v, w_t);
  raw_out.copy_(raw);
  auto normed = at::native_layer_norm(raw, {raw.size(1)}, gain, b, kLayerNormEps);
  stats0.copy_(std::get<1>(normed));
  stats1.copy_(std::get<2>(normed));
  return std::get<0>(normed);
}

Tensor norm_grad(const Tensor& d, const Tensor& raw, const Tensor& mean, const Tensor& rstd,
                 const OptTensor& gain) {
  return std::get<0>(at::native_layer_norm_backward(d, raw, {raw.size(1)}, mean, rstd, gain, {},
                                                    {true, false, false}));
}

template <typename T>
void forward_impl(bool reset_after, bool reverse, Tensor acts, Tensor h, const Tensor& w_hh,
                  const OptTensor& b_hh, const OptTensor& ln_hh, const OptTensor& mask,
                  const OptTensor& drop, const OptTensor& zone, Tensor h_in, Tensor aux, Tensor out,
                  const OptTensor& raw, Tensor stats) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = h.size(1);
  const Tensor w_t = w_hh.t();
  const Tensor w_rz_t = w_t.narrow(1, 0, 2 * H), w_n_t = w_t.narrow(1, 2 * H, H);
  OptTensor b_rz, b_n, g_rz, g_n;
  if (b_hh.has_value()) b_rz = b_hh->narrow(0, 0, 2 * H), b_n = b_hh->narrow(0, 2 * H, H);
  if (ln_hh.has_value()) g_rz = ln_hh->narrow(0, 0, 2 * H), g_n = ln_hh->narrow(0, 2 * H, H);
  const T* drop_p = ptr<T>(drop);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  const T* zp = ptr<T>(zone);
  Tensor hd = drop.has_value() ? at::empty({B, H}, acts.options()) : h;
  Tensor h_new = at::empty({B, H}, acts.options());
  T* h_p = h.data_ptr<T>();
  T* hn_p = h_new.data_ptr<T>();
  Tensor unused;
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    std::copy(h_p, h_p + B * H, h_in.data_ptr<T>() + t * B * H);
    if (drop_p != nullptr) {
      T* d = hd.data_ptr<T>();
      for (int64_t k = 0; k < B * H; ++k) d[k] = h_p[k] * drop_p[k];
    }
    T* v0 = acts.data_ptr<T>() + t * B * 3 * H;
    T* aux0 = aux.data_ptr<T>() + t * B * H;
    Tensor raw_t = raw.has_value() ? (*raw)[t] : unused;
    if (reset_after) {
      Tensor q = product(hd, w_t, b_hh, ln_hh, raw_t, stats[0][0][t], stats[0][1][t]).contiguous();
      const T* q0 = q.data_ptr<T>();
      for (int64_t b = 0; b < B; ++b) {
        T* v = v0 + b * 3 * H;
        const T* qb = q0 + b * 3 * H;
        T* r = v;
        T* z = v + H;
        T* n = v + 2 * H;
        T* ax = aux0 + b * H;
        for (int64_t j = 0; j < 2 * H; ++j) v[j] = sigmoid(v[j] + qb[j]);
        for (int64_t j = 0; j < H; ++j) {
          ax[j] = qb[2 * H + j];
          n[j] = tanh_(n[j] + r[j] * ax[j]);
        }
        const T* hp = h_p + b * H;
        T* hn = hn_p + b * H;
        for (int64_t j = 0; j < H; ++j) hn[j] = n[j] + z[j] * (hp[j] - n[j]);
      }
    } else {
      Tensor raw_rz = raw.has_value() ? raw_t.narrow(1, 0, 2 * H) : unused;
      Tensor q = product(hd, w_rz_t, b_rz, g_rz, raw_rz, stats[0][0][t], stats[0][1][t]).contiguous();
      const T* q0 = q.data_ptr<T>();
      const T* hd_p = hd.data_ptr<T>();
      for (int64_t b = 0; b < B; ++b) {
        T* v = v0 + b * 3 * H;
        const T* qb = q0 + b * 2 * H;
        for (int64_t j = 0; j < 2 * H; ++j) v[j] = sigmoid(v[j] + qb[j]);
        const T* hb = hd_p + b * H;
        T* ax = aux0 + b * H;
        for (int64_t j = 0; j < H; ++j) ax[j] = v[j] * hb[j];  // r h
      }
      Tensor raw_n = raw.has_value() ? raw_t.narrow(1, 2 * H, H) : unused;
      Tensor qn = product(aux[t], w_n_t, b_n, g_n, raw_n, stats[1][0][t], stats[1][1][t]).contiguous();
      const T* qn0 = qn.data_ptr<T>();
      for (int64_t b = 0; b < B; ++b) {
        T* v = v0 + b * 3 * H;
        T* z = v + H;
        T* n = v + 2 * H;
        const T* qb = qn0 + b * H;
        const T* hp = h_p + b * H;
        T* hn = hn_p + b * H;
        for (int64_t j = 0; j < H; ++j) n[j] = tanh_(n[j] + qb[j]);
        for (int64_t j = 0; j < H; ++j) hn[j] = n[j] + z[j] * (hp[j] - n[j]);
      }
    }
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    finish_step<T>(hn_p, h_p, out.data_ptr<T>() + t * B * H, at_step(zp, t, B, H), live, B, H);
  }
}

template <typename T>
void backward_impl(bool reset_after, bool reverse, const Tensor& acts, const Tensor& d_out, Tensor dh_state,
                   const Tensor& h_in, const Tensor& aux, const Tensor& w_hh, const OptTensor& ln_hh,
                   const OptTensor& mask, const OptTensor& drop, const OptTensor& zone, const OptTensor& raw,
                   const Tensor& stats, Tensor d_pre, Tensor d_q, const OptTensor& d_raw) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = h_in.size(2);
  const Tensor w_rz = w_hh.narrow(0, 0, 2 * H), w_n = w_hh.narrow(0, 2 * H, H);
  OptTensor g_rz, g_n;
  if (ln_hh.has_value()) g_rz = ln_hh->narrow(0, 0, 2 * H), g_n = ln_hh->narrow(0, 2 * H, H);
  const T* drop_p = ptr<T>(drop);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  const T* zp = ptr<T>(zone);
  auto opts = acts.options();
  Tensor dh = at::empty({B, H}, opts), dh_prev = at::empty({B, H}, opts);
  Tensor dh_kept = zp != nullptr ? at::empty({B, H}, opts) : Tensor();
  Tensor dpn = at::empty({B, H}, opts);
  T* dh_p = dh.data_ptr<T>();
  T* dhp_p = dh_prev.data_ptr<T>();
  T* dpn_p = dpn.data_ptr<T>();
  T* dhs_p = dh_state.data_ptr<T>();
  const T* dout_p = d_out.data_ptr<T>();
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? step : Tn - 1 - step;
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    start_grad(dhs_p, dout_p + t * B * H, live, at_step(zp, t, B, H), dh_p,
               zp != nullptr ? dh_kept.data_ptr<T>() : nullptr, B, H);
    const T* v0 = acts.data_ptr<T>() + t * B * 3 * H;
    T* dv0 = d_pre.data_ptr<T>() + t * B * 3 * H;
    const T* hin0 = h_in.data_ptr<T>() + t * B * H;
    const T* aux0 = aux.data_ptr<T>() + t * B * H;
    for (int64_t b = 0; b < B; ++b) {  // through h_t = n + z (h_{t-1} - n)
      const T* z = v0 + b * 3 * H + H;
      const T* n = z + H;
      T* dz = dv0 + b * 3 * H + H;
      T* dn = dz + H;
      const T* hp = hin0 + b * H;
      const T* g = dh_p + b * H;
      T* dhp = dhp_p + b * H;
      T* dpnb = dpn_p + b * H;
      for (int64_t j = 0; j < H; ++j) {
        dz[j] = g[j] * (hp[j] - n[j]) * z[j] * (T(1) - z[j]);
        dn[j] = g[j] * (T(1) - z[j]) * (T(1) - n[j] * n[j]);
        dpnb[j] = dn[j];
        dhp[j] = g[j] * z[j];
      }
    }
    Tensor d_hd;
    if (reset_after) {
      T* dq0 = d_q.data_ptr<T>() + t * B * 3 * H;
      for (int64_t b = 0; b < B; ++b) {
        const T* r = v0 + b * 3 * H;
        T* dr = dv0 + b * 3 * H;
        T* dq = dq0 + b * 3 * H;
        const T* ax = aux0 + b * H;
        const T* dnb = dpn_p + b * H;
        for (int64_t j = 0; j < H; ++j) dr[j] = dnb[j] * ax[j] * r[j] * (T(1) - r[j]);
        std::copy(dr, dr + 2 * H, dq);
        for (int64_t j = 0; j < H; ++j) dq[2 * H + j] = dnb[j] * r[j];
      }
      Tensor d_rec = d_q[t];
      if (d_raw.has_value()) {
        d_rec = norm_grad(d_rec, (*raw)[t], stats[0][0][t], stats[0][1][t], ln_hh);
        (*d_raw)[t].copy_(d_rec);
      }
      d_hd = at::mm(d_rec, w_hh);
    } else {
      Tensor d_n = dpn;
      if (d_raw.has_value()) {
        d_n = norm_grad(dpn, (*raw)[t].narrow(1, 2 * H, H), stats[1][0][t], stats[1][1][t], g_n);
        (*d_raw)[t].narrow(1, 2 * H, H).copy_(d_n);
      }
      Tensor d_rh = at::mm(d_n, w_n);
      const T* drh0 = d_rh.data_ptr<T>();
      T* dq0 = d_q.data_ptr<T>() + t * B * 2 * H;
      for (int64_t b = 0; b < B; ++b) {
        const T* r = v0 + b * 3 * H;
        T* dr = dv0 + b * 3 * H;
        const T* hp = hin0 + b * H;
        const T* drh = drh0 + b * H;
        const T* dm = drop_p == nullptr ? nullptr : drop_p + b * H;
        for (int64_t j = 0; j < H; ++j) {
          const T hd = dm == nullptr ? hp[j] : hp[j] * dm[j];
          dr[j] = drh[j] * hd * r[j] * (T(1) - r[j]);
        }
        std::copy(dr, dr + 2 * H, dq0 + b * 2 * H);
      }
      Tensor d_rec = d_q[t];
      if (d_raw.has_value()) {
        d_rec = norm_grad(d_rec, (*raw)[t].narrow(1, 0, 2 * H), stats[0][0][t], stats[0][1][t], g_rz);
        (*d_raw)[t].narrow(1, 0, 2 * H).copy_(d_rec);
      }
      Tensor r_t = acts[t].narrow(1, 0, H);
      d_hd = at::addmm(d_rh * r_t, d_rec, w_rz);
    }
    d_hd = d_hd.contiguous();
    const T* dhd = d_hd.data_ptr<T>();
    for (int64_t k = 0; k < B * H; ++k) dhp_p[k] += drop_p == nullptr ? dhd[k] : dhd[k] * drop_p[k];
    end_grad<T>(dhp_p, nullptr, zp != nullptr ? dh_kept.data_ptr<T>() : nullptr, live, dhs_p, B, H);
  }
}

}  // namespace

std::vector<Tensor> gru_forward(Tensor acts, const Tensor& h0, const Tensor& w_hh, const OptTensor& b_hh,
                                const OptTensor& ln_hh, const OptTensor& mask, const OptTensor& drop,
                                const OptTensor& zone, Tensor h_in, Tensor aux, Tensor out,
                                const OptTensor& raw, Tensor stats, bool reset_after, bool reverse) {
  TORCH_CHECK(acts.is_contiguous() && aux.is_contiguous() && out.is_contiguous(), "gru loop: buffers must be contiguous");
  Tensor h = h0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_forward", [&] {
    forward_impl<scalar_t>(reset_after, reverse, acts, h, w_hh, b_hh, ln_hh, contiguous(mask), contiguous(drop),
                           contiguous(zone), h_in, aux, out, raw, stats);
  });
  return {h};
}

std::vector<Tensor> gru_backward(const Tensor& acts, const Tensor& d_out, const Tensor& d_h, const Tensor& h_in,
                                 const Tensor& aux, const Tensor& w_hh, const OptTensor& ln_hh,
                                 const OptTensor& mask, const OptTensor& drop, const OptTensor& zone,
                                 const OptTensor& raw, const Tensor& stats, Tensor d_pre, Tensor d_q,
                                 const OptTensor& d_raw, bool reset_after, bool reverse) {
  Tensor dh = d_h.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_backward", [&] {
    backward_impl<scalar_t>(reset_after, reverse, acts, d_out.contiguous(), dh, h_in, aux, w_hh, ln_hh,
                            contiguous(mask), contiguous(drop), contiguous(zone), raw, stats, d_pre, d_q, d_raw);
  });
  return {dh};
}

}  // namespace unrolled
