// The GRU's time loop (both forms), forward and backward: the steps of
// unrolled/engines/fused/gru.py, the per-step GEMMs through gemm.cpp, the gate math and layer
// norms as raw loops over the rows.
#include "common.h"

namespace unrolled {

namespace {

template <typename T>
void forward_impl(bool reset_after, bool reverse, Tensor acts, Tensor h, const Tensor& w_hh,
                  const OptTensor& b_hh, const OptTensor& ln_hh, const OptTensor& mask,
                  const OptTensor& drop, const OptTensor& zone, Tensor h_in, Tensor aux, Tensor out,
                  const OptTensor& raw, Tensor stats) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = h.size(1);
  const Tensor w_t = w_hh.t();
  const Tensor w_rz_t = w_t.narrow(1, 0, 2 * H), w_n_t = w_t.narrow(1, 2 * H, H);
  OptTensor b_rz, b_n;
  if (b_hh.has_value()) b_rz = b_hh->narrow(0, 0, 2 * H), b_n = b_hh->narrow(0, 2 * H, H);
  const bool ln = ln_hh.has_value();
  const T* g_p = ptr<T>(ln_hh);  // gains: r, z, n
  const T* b_p = ptr<T>(b_hh);
  T* raw_p = ptr<T>(raw);
  T* st_p = stats.data_ptr<T>();  // (2, 2, T, B, 1): [r,z product (or all) | candidate][mean | rstd]
  auto stat = [&](int64_t part, int64_t k, int64_t t, int64_t b) { return st_p + ((part * 2 + k) * Tn + t) * B + b; };
  const T* drop_p = ptr<T>(drop);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  const T* zp = ptr<T>(zone);
  Tensor hd = drop.has_value() ? at::empty({B, H}, acts.options()) : h;
  Tensor h_new = at::empty({B, H}, acts.options());
  T* h_p = h.data_ptr<T>();
  T* hn_p = h_new.data_ptr<T>();
  const int64_t QW = reset_after ? 3 * H : 2 * H;  // width of the first recurrent product
  Tensor q = at::empty({B, QW}, acts.options()), qn = at::empty({B, H}, acts.options());  // per-step GEMMs
  const StepGemm first(reset_after ? w_t : w_rz_t, B, false, Tn);
  const std::optional<StepGemm> candidate =
      reset_after ? std::nullopt : std::optional<StepGemm>(std::in_place, w_n_t, B, false, Tn);
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    std::copy(h_p, h_p + B * H, h_in.data_ptr<T>() + t * B * H);
    if (drop_p != nullptr) {
      T* d = hd.data_ptr<T>();
      for (int64_t k = 0; k < B * H; ++k) d[k] = h_p[k] * drop_p[k];
    }
    T* v0 = acts.data_ptr<T>() + t * B * 3 * H;
    T* aux0 = aux.data_ptr<T>() + t * B * H;
    T* raw0 = ln ? raw_p + t * B * 3 * H : nullptr;
    // Q = h W^T (+ b_hh): with layer norm the raw product, normalised per row below
    first.with_bias(q, ln ? OptTensor() : reset_after ? b_hh : b_rz, hd);
    T* q0 = q.data_ptr<T>();
    const T* hd_p = hd.data_ptr<T>();
    for_rows(B, 3 * H, [&](int64_t b) {
      T* v = v0 + b * 3 * H;
      T* qb = q0 + b * QW;
      if (ln) {  // keep the raw product, then Q = LN(raw) gain + b
        T* rb = raw0 + b * 3 * H;
        std::copy(qb, qb + QW, rb);
        norm_row(rb, QW, g_p, b_p, qb, false, stat(0, 0, t, b), stat(0, 1, t, b));
      }
      for (int64_t j = 0; j < 2 * H; ++j) v[j] += qb[j];
      sigmoid_rows(v, 2 * H);
      const T* r = v;
      T* ax = aux0 + b * H;
      if (reset_after) {  // aux = Q_n, n = tanh(P_n + r Q_n)
        T* n = v + 2 * H;
        std::copy(qb + 2 * H, qb + 3 * H, ax);
        for (int64_t j = 0; j < H; ++j) n[j] += r[j] * ax[j];
        tanh_rows(n, H);
        const T* z = v + H;
        const T* hp = h_p + b * H;
        T* hn = hn_p + b * H;
        for (int64_t j = 0; j < H; ++j) hn[j] = n[j] + z[j] * (hp[j] - n[j]);
      } else {  // aux = r h (masked h)
        const T* hb = hd_p + b * H;
        for (int64_t j = 0; j < H; ++j) ax[j] = r[j] * hb[j];
      }
    });
    if (!reset_after) {  // n = tanh(P_n + (r h) W_hn^T + b_hn), with LN on the product if on
      candidate->with_bias(qn, ln ? OptTensor() : b_n, aux[t]);
      T* qn0 = qn.data_ptr<T>();
      for_rows(B, 3 * H, [&](int64_t b) {
        T* v = v0 + b * 3 * H;
        T* qb = qn0 + b * H;
        if (ln) {
          T* rb = raw0 + b * 3 * H + 2 * H;
          std::copy(qb, qb + H, rb);
          norm_row(rb, H, g_p + 2 * H, b_p == nullptr ? nullptr : b_p + 2 * H, qb, false, stat(1, 0, t, b),
                   stat(1, 1, t, b));
        }
        T* n = v + 2 * H;
        for (int64_t j = 0; j < H; ++j) n[j] += qb[j];
        tanh_rows(n, H);
        const T* z = v + H;
        const T* hp = h_p + b * H;
        T* hn = hn_p + b * H;
        for (int64_t j = 0; j < H; ++j) hn[j] = n[j] + z[j] * (hp[j] - n[j]);
      });
    }
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    finish_step<T>(hn_p, h_p, out.data_ptr<T>() + t * B * H, at_step(zp, t, B, H), live, B, H);
  }
}

template <typename T>
void backward_impl(bool reset_after, bool reverse, const Tensor& acts, const Tensor& d_out, Tensor dh_state,
                   const Tensor& h_in, const Tensor& aux, const Tensor& w_hh, const OptTensor& ln_hh,
                   const OptTensor& mask, const OptTensor& drop, const OptTensor& zone, const OptTensor& raw,
                   const Tensor& stats, Tensor d_pre, Tensor d_q, const OptTensor& d_raw, Tensor d_ln_rows) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = h_in.size(2);
  const Tensor w_rz = w_hh.narrow(0, 0, 2 * H), w_n = w_hh.narrow(0, 2 * H, H);
  const bool ln = ln_hh.has_value();
  const T* g_p = ptr<T>(ln_hh);
  const T* raw_p = ptr<T>(raw);
  T* draw_p = ptr<T>(d_raw);
  T* dln_p = ln ? d_ln_rows.data_ptr<T>() : nullptr;  // (B, 3H): gain gradients summed per row
  const T* st_p = stats.data_ptr<T>();
  auto stat = [&](int64_t part, int64_t k, int64_t t, int64_t b) { return st_p[((part * 2 + k) * Tn + t) * B + b]; };
  const T* drop_p = ptr<T>(drop);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  const T* zp = ptr<T>(zone);
  auto opts = acts.options();
  Tensor dh = at::empty({B, H}, opts), dh_prev = at::empty({B, H}, opts);
  Tensor dh_kept = zp != nullptr ? at::empty({B, H}, opts) : Tensor();
  Tensor d_n = at::empty({B, H}, opts);  // the candidate product's gradient (after its LN backward)
  T* dh_p = dh.data_ptr<T>();
  T* dhp_p = dh_prev.data_ptr<T>();
  T* dn_p = d_n.data_ptr<T>();
  T* dhs_p = dh_state.data_ptr<T>();
  const T* dout_p = d_out.data_ptr<T>();
  const int64_t QW = reset_after ? 3 * H : 2 * H;
  Tensor d_hd = at::empty({B, H}, opts), d_rh = at::empty({B, H}, opts);  // per-step GEMMs' outputs
  const StepGemm first(reset_after ? w_hh : w_rz, B, false, Tn);
  const std::optional<StepGemm> candidate =
      reset_after ? std::nullopt : std::optional<StepGemm>(std::in_place, w_n, B, false, Tn);
  const T* dhd = d_hd.data_ptr<T>();
  const T* drh0 = d_rh.data_ptr<T>();
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? step : Tn - 1 - step;
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    start_grad(dhs_p, dout_p + t * B * H, live, at_step(zp, t, B, H), dh_p,
               zp != nullptr ? dh_kept.data_ptr<T>() : nullptr, B, H);
    const T* v0 = acts.data_ptr<T>() + t * B * 3 * H;
    T* dv0 = d_pre.data_ptr<T>() + t * B * 3 * H;
    const T* hin0 = h_in.data_ptr<T>() + t * B * H;
    const T* aux0 = aux.data_ptr<T>() + t * B * H;
    T* dq0 = d_q.data_ptr<T>() + t * B * QW;
    const T* raw0 = ln ? raw_p + t * B * 3 * H : nullptr;
    T* draw0 = ln ? draw_p + t * B * 3 * H : nullptr;
    for_rows(B, 3 * H, [&](int64_t b) {  // through h_t = n + z (h_{t-1} - n), and reset_after's Q
      const T* r = v0 + b * 3 * H;
      const T* z = r + H;
      const T* n = z + H;
      T* dr = dv0 + b * 3 * H;
      T* dz = dr + H;
      T* dn = dz + H;
      const T* hp = hin0 + b * H;
      const T* g = dh_p + b * H;
      T* dhp = dhp_p + b * H;
      for (int64_t j = 0; j < H; ++j) {
        dz[j] = g[j] * (hp[j] - n[j]) * z[j] * (T(1) - z[j]);
        dn[j] = g[j] * (T(1) - z[j]) * (T(1) - n[j] * n[j]);
        dhp[j] = g[j] * z[j];
      }
      T* dnb = dn_p + b * H;
      if (reset_after) {  // dQ = [dr, dz, dn r] with dr = dn Q_n σ'(r); then back through the LN
        const T* ax = aux0 + b * H;
        T* dq = dq0 + b * 3 * H;
        for (int64_t j = 0; j < H; ++j) dr[j] = dn[j] * ax[j] * r[j] * (T(1) - r[j]);
        std::copy(dr, dr + 2 * H, dq);
        for (int64_t j = 0; j < H; ++j) dq[2 * H + j] = dn[j] * r[j];
        if (ln)
          norm_row_grad(dq, raw0 + b * 3 * H, 3 * H, stat(0, 0, t, b), stat(0, 1, t, b), g_p, draw0 + b * 3 * H,
                        dln_p + b * 3 * H, static_cast<T*>(nullptr));
      } else if (ln) {
        norm_row_grad(dn, raw0 + b * 3 * H + 2 * H, H, stat(1, 0, t, b), stat(1, 1, t, b), g_p + 2 * H, dnb,
                      dln_p + b * 3 * H + 2 * H, static_cast<T*>(nullptr));
        std::copy(dnb, dnb + H, draw0 + b * 3 * H + 2 * H);
      } else {
        std::copy(dn, dn + H, dnb);
      }
    });
    if (reset_after) {  // d(h that entered the product) = dQ W_hh
      first(d_hd, ln ? (*d_raw)[t] : d_q[t]);
    } else {  // d(r h) = d_n W_hn, then d(h entered) = dQ_rz W_rz + d(r h) r
      (*candidate)(d_rh, d_n);
      for_rows(B, 3 * H, [&](int64_t b) {
        const T* r = v0 + b * 3 * H;
        T* dr = dv0 + b * 3 * H;
        const T* hp = hin0 + b * H;
        const T* drh = drh0 + b * H;
        const T* dm = drop_p == nullptr ? nullptr : drop_p + b * H;
        if (dm == nullptr) {
          for (int64_t j = 0; j < H; ++j) dr[j] = drh[j] * hp[j] * r[j] * (T(1) - r[j]);
        } else {
          for (int64_t j = 0; j < H; ++j) dr[j] = drh[j] * hp[j] * dm[j] * r[j] * (T(1) - r[j]);
        }
        T* dq = dq0 + b * 2 * H;
        std::copy(dr, dr + 2 * H, dq);
        if (ln)
          norm_row_grad(dq, raw0 + b * 3 * H, 2 * H, stat(0, 0, t, b), stat(0, 1, t, b), g_p, draw0 + b * 3 * H,
                        dln_p + b * 3 * H, static_cast<T*>(nullptr));
      });
      first(d_hd, ln ? (*d_raw)[t].narrow(1, 0, 2 * H) : d_q[t]);
    }
    for (int64_t b = 0; b < B; ++b) {  // dh_{t-1} += d(h entered) (times the dropout mask)
      const T* r = v0 + b * 3 * H;
      const T* drh = drh0 + b * H;
      const T* g = dhd + b * H;
      const T* dm = drop_p == nullptr ? nullptr : drop_p + b * H;
      T* dhp = dhp_p + b * H;
      for (int64_t j = 0; j < H; ++j) {
        const T d = reset_after ? g[j] : g[j] + drh[j] * r[j];
        dhp[j] += dm == nullptr ? d : d * dm[j];
      }
    }
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
    forward_impl<scalar_t>(reset_after, reverse, acts, h, w_hh, contiguous(b_hh), contiguous(ln_hh), contiguous(mask),
                           contiguous(drop), contiguous(zone), h_in, aux, out, raw, stats);
  });
  return {h};
}

// Returns the initial h's gradient and, with layer norm, the gains' gradient summed over steps
// and rows (undefined without).
std::vector<Tensor> gru_backward(const Tensor& acts, const Tensor& d_out, const Tensor& d_h, const Tensor& h_in,
                                 const Tensor& aux, const Tensor& w_hh, const OptTensor& ln_hh,
                                 const OptTensor& mask, const OptTensor& drop, const OptTensor& zone,
                                 const OptTensor& raw, const Tensor& stats, Tensor d_pre, Tensor d_q,
                                 const OptTensor& d_raw, bool reset_after, bool reverse) {
  Tensor dh = d_h.contiguous().clone();
  Tensor d_ln_rows = ln_hh.has_value() ? at::zeros({d_h.size(0), ln_hh->size(0)}, acts.options()) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_backward", [&] {
    backward_impl<scalar_t>(reset_after, reverse, acts, d_out.contiguous(), dh, h_in, aux, w_hh, contiguous(ln_hh),
                            contiguous(mask), contiguous(drop), contiguous(zone), raw, stats, d_pre, d_q, d_raw,
                            d_ln_rows);
  });
  return {dh, ln_hh.has_value() ? d_ln_rows.sum(0) : Tensor()};
}

}  // namespace unrolled
