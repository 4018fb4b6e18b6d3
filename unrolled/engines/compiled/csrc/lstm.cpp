// The LSTM family's time loop, forward and backward: the steps of
// unrolled/engines/fused/lstm.py (same equations, same saved tensors), one recurrent GEMM and
// raw pointwise loops per step. The Python side allocates every buffer and does the work over
// all steps at once (input projection, weight gradients); this file is only the loop.
#include "common.h"

namespace unrolled {

namespace {

struct Spec {
  int64_t ci, cf, cg, co;  // column block of each gate in the stacked rows, -1 if absent
  int64_t pi, pf, po;      // row of each peephole in weight_peephole, -1 if none
  bool coupled, in_act, out_act;
  std::vector<int64_t> sig_cols;  // FGR: the sigmoid gates' column blocks, in order
};

Spec make_spec(const std::vector<int64_t>& cols, const std::vector<int64_t>& peeps,
               std::vector<int64_t> sig_cols, bool coupled, bool in_act, bool out_act) {
  TORCH_CHECK(cols.size() == 4 && peeps.size() == 3, "lstm loop: cols (4) and peeps (3) expected");
  return Spec{cols[0], cols[1], cols[2], cols[3], peeps[0], peeps[1], peeps[2],
              coupled, in_act, out_act, std::move(sig_cols)};
}

template <typename T>
void forward_impl(const Spec& s, bool reverse, Tensor acts, Tensor h, Tensor c, Tensor a,
                  const Tensor& w_hh, const OptTensor& w_peep, const OptTensor& w_hr,
                  const OptTensor& w_gate, const OptTensor& ln_hh, const OptTensor& ln_c_w,
                  const OptTensor& ln_c_b, const OptTensor& mask, const OptTensor& drop,
                  const OptTensor& zone_h, const OptTensor& zone_c, Tensor h_in, Tensor c_in,
                  Tensor c_out, const OptTensor& m_all, const OptTensor& a_in, Tensor out,
                  const OptTensor& q_raw, const OptTensor& c_norm, Tensor stats, const OptTensor& bias) {
  const int64_t Tn = acts.size(0), B = acts.size(1), GH = acts.size(2);
  const T* bias_p = ptr<T>(bias);  // b_ih + b_hh, added here when the projection left it out
  const int64_t H = c.size(1), R = h.size(1);
  const int64_t S = w_gate.has_value() ? static_cast<int64_t>(s.sig_cols.size()) : 0;  // FGR only
  const Tensor w_hh_t = w_hh.t();
  const OptTensor w_hr_t = w_hr.has_value() ? OptTensor(w_hr->t()) : OptTensor();
  const OptTensor w_gate_t = w_gate.has_value() ? OptTensor(w_gate->t()) : OptTensor();
  const T* peep = ptr<T>(w_peep);
  const T* drop_p = ptr<T>(drop);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  const T* zh = ptr<T>(zone_h);
  const T* zc = ptr<T>(zone_c);
  const T* ln_hh_p = ptr<T>(ln_hh);
  const T* ln_c_w_p = ptr<T>(ln_c_w);
  const T* ln_c_b_p = ptr<T>(ln_c_b);
  T* st_p = stats.data_ptr<T>();  // (4, T, B, 1): mean, rstd of the recurrent LN, then of the cell's
  Tensor h_new = w_hr.has_value() ? at::empty({B, R}, acts.options()) : Tensor();
  Tensor m_buf = w_hr.has_value() ? Tensor() : at::empty({B, H}, acts.options());
  Tensor extra = S > 0 ? at::empty({B, S * H}, acts.options()) : Tensor();  // FGR: a_{t-1} R^T
  T* h_p = h.data_ptr<T>();
  T* c_p = c.data_ptr<T>();
  T* a_p = S > 0 ? a.data_ptr<T>() : nullptr;
  // the step's recurrent GEMM: added to the gates' arguments, or with layer norm the raw product
  const StepGemm recur(w_hh_t, B, !q_raw.has_value(), Tn);
  const std::optional<StepGemm> gate_gemm =
      S > 0 ? std::optional<StepGemm>(std::in_place, *w_gate_t, B, false, Tn) : std::nullopt;
  const std::optional<StepGemm> proj_gemm =
      w_hr.has_value() ? std::optional<StepGemm>(std::in_place, *w_hr_t, B, false, Tn) : std::nullopt;
  // without a projection or FGR's carried gates, each row ends its step inside the parallel
  // loop (its state, output and cell), not in a serial pass after it
  const bool row_ends = !w_hr.has_value() && S == 0;
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? Tn - 1 - step : step;
    Tensor hin_t = h_in[t];
    T* hin = hin_t.data_ptr<T>();
    for (int64_t k = 0; k < B * R; ++k) hin[k] = drop_p == nullptr ? h_p[k] : h_p[k] * drop_p[k];
    std::copy(c_p, c_p + B * H, c_in.data_ptr<T>() + t * B * H);
    Tensor pre = acts[t];
    if (!q_raw.has_value()) {
      recur(pre, hin_t);
    } else {
      Tensor raw = (*q_raw)[t];
      recur(raw, hin_t);
      const T* raw_p = raw.data_ptr<T>();
      T* pre_p = pre.data_ptr<T>();
      for_rows(B, GH, [&](int64_t b) {  // A += LN(h W_hh^T) gain, per row
        norm_row(raw_p + b * GH, GH, ln_hh_p, static_cast<const T*>(nullptr), pre_p + b * GH, true,
                 st_p + t * B + b, st_p + (Tn + t) * B + b);
      });
    }
    if (S > 0) {  // FGR: a_{t-1} R^T, added to the sigmoid gates' arguments below
      std::copy(a_p, a_p + B * S * H, a_in->data_ptr<T>() + t * B * S * H);
      (*gate_gemm)(extra, a);
    }
    T* v0 = pre.data_ptr<T>();
    T* cn0 = c_out.data_ptr<T>() + t * B * H;
    T* m0 = w_hr.has_value() ? m_all->data_ptr<T>() + t * B * H : m_buf.data_ptr<T>();
    T* cnorm0 = c_norm.has_value() ? c_norm->data_ptr<T>() + t * B * H : nullptr;
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    T* out_t = out.data_ptr<T>() + t * B * R;
    const T* zh_t = at_step(zh, t, B, R);
    const T* zc_t = at_step(zc, t, B, H);
    for_rows(B, GH, [&](int64_t b) {
      // i, f, g and c_t
      T* v = v0 + b * GH;
      if (bias_p != nullptr) {
        for (int64_t j = 0; j < GH; ++j) v[j] += bias_p[j];
      }
      const T* cp = c_p + b * H;
      T* cn = cn0 + b * H;
      if (S > 0) {
        const T* e = extra.data_ptr<T>() + b * S * H;
        for (int64_t k = 0; k < S; ++k) {
          T* vk = v + s.sig_cols[k] * H;
          for (int64_t j = 0; j < H; ++j) vk[j] += e[k * H + j];
        }
      }
      T* gi = s.ci >= 0 ? v + s.ci * H : nullptr;
      T* gf = s.cf >= 0 ? v + s.cf * H : nullptr;
      T* gg = v + s.cg * H;
      if (gi != nullptr) {
        if (s.pi >= 0) {
          const T* p = peep + s.pi * H;
          for (int64_t j = 0; j < H; ++j) gi[j] += p[j] * cp[j];
        }
        sigmoid_rows(gi, H);
      }
      if (gf != nullptr) {
        if (s.pf >= 0) {
          const T* p = peep + s.pf * H;
          for (int64_t j = 0; j < H; ++j) gf[j] += p[j] * cp[j];
        }
        sigmoid_rows(gf, H);
      }
      if (s.in_act) tanh_rows(gg, H);
      if (gi == nullptr) {
        if (gf == nullptr) {
          for (int64_t j = 0; j < H; ++j) cn[j] = cp[j] + gg[j];
        } else {
          for (int64_t j = 0; j < H; ++j) cn[j] = gg[j] + gf[j] * cp[j];
        }
      } else if (s.coupled) {
        for (int64_t j = 0; j < H; ++j) cn[j] = gi[j] * gg[j] + (T(1) - gi[j]) * cp[j];
      } else if (gf == nullptr) {
        for (int64_t j = 0; j < H; ++j) cn[j] = cp[j] + gi[j] * gg[j];
      } else {
        for (int64_t j = 0; j < H; ++j) cn[j] = gi[j] * gg[j] + gf[j] * cp[j];
      }
      // LN(c_t) if on: what the output activation reads
      const T* y = cn;
      if (cnorm0 != nullptr) {
        norm_row(cn, H, ln_c_w_p, ln_c_b_p, cnorm0 + b * H, false, st_p + (2 * Tn + t) * B + b,
                 st_p + (3 * Tn + t) * B + b);
        y = cnorm0 + b * H;
      }
      // o and m_t = o y
      T* m = m0 + b * H;
      if (s.out_act) {
        for (int64_t j = 0; j < H; ++j) m[j] = tanh_(y[j]);
      } else {
        std::copy(y, y + H, m);
      }
      if (s.co >= 0) {
        T* go = v + s.co * H;
        if (s.po >= 0) {
          const T* p = peep + s.po * H;
          for (int64_t j = 0; j < H; ++j) go[j] += p[j] * cn[j];
        }
        sigmoid_rows(go, H);
        for (int64_t j = 0; j < H; ++j) m[j] *= go[j];
      }
      if (row_ends) {
        const bool* live_b = live == nullptr ? nullptr : live + b;
        finish_step(m, h_p + b * R, out_t + b * R, zh_t == nullptr ? nullptr : zh_t + b * R, live_b, 1, R);
        finish_step<T>(cn, c_p + b * H, nullptr, zc_t == nullptr ? nullptr : zc_t + b * H, live_b, 1, H);
      }
    });
    if (!row_ends) {
      const T* hn;
      if (w_hr.has_value()) {
        (*proj_gemm)(h_new, (*m_all)[t]);
        hn = h_new.data_ptr<T>();
      } else {
        hn = m_buf.data_ptr<T>();
      }
      finish_step(hn, h_p, out_t, zh_t, live, B, R);
      finish_step<T>(cn0, c_p, nullptr, zc_t, live, B, H);
    }
    if (S > 0) {  // FGR carries the sigmoid gates' activations
      for (int64_t b = 0; b < B; ++b) {
        if (live != nullptr && !live[b]) continue;
        for (int64_t k = 0; k < S; ++k) {
          const T* g = v0 + b * GH + s.sig_cols[k] * H;
          std::copy(g, g + H, a_p + (b * S + k) * H);
        }
      }
    }
  }
}

template <typename T>
void backward_impl(const Spec& s, bool reverse, const Tensor& acts, const Tensor& d_out, Tensor dh_state,
                   Tensor dc_state, Tensor da_state, const Tensor& c_in, const Tensor& c_out,
                   const Tensor& w_hh, const OptTensor& w_peep, const OptTensor& w_hr,
                   const OptTensor& w_gate, const OptTensor& ln_hh, const OptTensor& ln_c_w,
                   const OptTensor& mask, const OptTensor& drop, const OptTensor& zone_h,
                   const OptTensor& zone_c, const OptTensor& q_raw, const OptTensor& c_norm,
                   const Tensor& stats, Tensor d_pre, Tensor d_q, const OptTensor& dh_all,
                   Tensor d_ln_hh, Tensor d_ln_c_w, Tensor d_ln_c_b) {
  const int64_t Tn = acts.size(0), B = acts.size(1), GH = acts.size(2);
  const int64_t H = c_in.size(2), R = d_out.size(2);
  const int64_t S = w_gate.has_value() ? static_cast<int64_t>(s.sig_cols.size()) : 0;  // FGR only
  const T* peep = ptr<T>(w_peep);
  const T* drop_p = ptr<T>(drop);
  const bool* mask_p = mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  const T* zh = ptr<T>(zone_h);
  const T* zc = ptr<T>(zone_c);
  const bool zoned = zh != nullptr;
  const T* ln_hh_p = ptr<T>(ln_hh);
  const T* ln_c_w_p = ptr<T>(ln_c_w);
  const T* st_p = stats.data_ptr<T>();
  auto opts = acts.options();
  Tensor dh = at::empty({B, R}, opts), dc = at::empty({B, H}, opts), dy = at::empty({B, H}, opts);
  Tensor dh_kept = zoned ? at::empty({B, R}, opts) : Tensor();
  Tensor dc_kept = zoned ? at::empty({B, H}, opts) : Tensor();
  Tensor dc_prev = at::empty({B, H}, opts);
  Tensor y_buf = s.out_act ? at::empty({B, H}, opts) : Tensor();
  T* y_rows = s.out_act ? y_buf.data_ptr<T>() : nullptr;  // tanh(c_t) or tanh(LN(c_t)), per row
  // the layer norms' gain gradients, summed per row (rows run on separate threads), then over rows
  Tensor ln_rows_hh = ln_hh.has_value() ? at::zeros({B, GH}, opts) : Tensor();
  Tensor ln_rows_c = ln_c_w.has_value() ? at::zeros({2, B, H}, opts) : Tensor();
  T* d_ln_hh_rows = ln_hh.has_value() ? ln_rows_hh.data_ptr<T>() : nullptr;
  T* d_ln_c_w_rows = ln_c_w.has_value() ? ln_rows_c.data_ptr<T>() : nullptr;
  T* d_ln_c_b_rows = ln_c_w.has_value() ? d_ln_c_w_rows + B * H : nullptr;
  const T* q_raw_p = ptr<T>(q_raw);
  Tensor da = S > 0 ? at::empty({B, S * H}, opts) : Tensor();
  Tensor d_sig = S > 0 ? at::empty({B, S * H}, opts) : Tensor();
  T* d_sig_p = S > 0 ? d_sig.data_ptr<T>() : nullptr;
  // the per-step GEMMs' outputs, allocated once
  Tensor dm_buf = w_hr.has_value() ? at::empty({B, H}, opts) : Tensor();
  Tensor dh_prev = at::empty({B, R}, opts);
  Tensor da_prev = S > 0 ? at::empty({B, S * H}, opts) : Tensor();
  const StepGemm recur(w_hh, B, false, Tn);
  const std::optional<StepGemm> gate_gemm =
      S > 0 ? std::optional<StepGemm>(std::in_place, *w_gate, B, false, Tn) : std::nullopt;
  const std::optional<StepGemm> proj_gemm =
      w_hr.has_value() ? std::optional<StepGemm>(std::in_place, *w_hr, B, false, Tn) : std::nullopt;
  // which FGR block of da feeds each gate (-1: none)
  int64_t ai = -1, af = -1, ao = -1;
  for (int64_t k = 0; k < S; ++k) {
    if (s.sig_cols[k] == s.ci) ai = k;
    if (s.sig_cols[k] == s.cf) af = k;
    if (s.sig_cols[k] == s.co) ao = k;
  }
  const T* acts_p = acts.data_ptr<T>();
  const T* dout_p = d_out.data_ptr<T>();
  T* dh_p = dh.data_ptr<T>();
  T* dc_p = dc.data_ptr<T>();
  T* dy_p = dy.data_ptr<T>();
  T* dcp_p = dc_prev.data_ptr<T>();
  T* dhs_p = dh_state.data_ptr<T>();
  T* dcs_p = dc_state.data_ptr<T>();
  for (int64_t step = 0; step < Tn; ++step) {
    const int64_t t = reverse ? step : Tn - 1 - step;  // backward visits the steps latest first
    const bool* live = mask_p == nullptr ? nullptr : mask_p + t * B;
    start_grad(dhs_p, dout_p + t * B * R, live, at_step(zh, t, B, R), dh_p,
               zoned ? dh_kept.data_ptr<T>() : nullptr, B, R);
    start_grad<T>(dcs_p, nullptr, live, at_step(zc, t, B, H), dc_p,
                  zoned ? dc_kept.data_ptr<T>() : nullptr, B, H);
    if (S > 0) start_grad<T>(da_state.data_ptr<T>(), nullptr, live, nullptr, da.data_ptr<T>(), nullptr, B, S * H);
    if (dh_all.has_value()) (*dh_all)[t].copy_(dh);
    if (w_hr.has_value()) (*proj_gemm)(dm_buf, dh);
    const Tensor& dm = w_hr.has_value() ? dm_buf : dh;
    const T* dm_p = dm.data_ptr<T>();
    const T* da_p = S > 0 ? da.data_ptr<T>() : nullptr;
    const T* v0 = acts_p + t * B * GH;
    T* dv0 = d_pre.data_ptr<T>() + t * B * GH;
    const T* cn0 = c_out.data_ptr<T>() + t * B * H;
    const T* cp0 = c_in.data_ptr<T>() + t * B * H;
    const T* y0 = c_norm.has_value() ? c_norm->data_ptr<T>() + t * B * H : cn0;
    for_rows(B, GH, [&](int64_t b) {
      // through m = o y: dA_o and dy
      const T* v = v0 + b * GH;
      T* dv = dv0 + b * GH;
      const T* y = y0 + b * H;
      const T* dmb = dm_p + b * H;
      T* dyb = dy_p + b * H;
      if (s.out_act) {  // y = tanh(c_t), recomputed
        T* y_row = y_rows + b * H;
        for (int64_t j = 0; j < H; ++j) y_row[j] = tanh_(y[j]);
        y = y_row;
      }
      if (s.co >= 0) {
        const T* go = v + s.co * H;
        T* dgo = dv + s.co * H;
        for (int64_t j = 0; j < H; ++j) {
          dgo[j] = dmb[j] * y[j] * go[j] * (T(1) - go[j]);
          dyb[j] = dmb[j] * go[j];
        }
        if (ao >= 0) {
          const T* dab = da_p + (b * S + ao) * H;
          for (int64_t j = 0; j < H; ++j) dgo[j] += dab[j] * go[j] * (T(1) - go[j]);
        }
      } else {
        std::copy(dmb, dmb + H, dyb);
      }
      if (s.out_act) {
        for (int64_t j = 0; j < H; ++j) dyb[j] *= T(1) - y[j] * y[j];
      }
      if (c_norm.has_value()) {  // back through the cell's layer norm
        norm_row_grad(dyb, cn0 + b * H, H, st_p[(2 * Tn + t) * B + b], st_p[(3 * Tn + t) * B + b], ln_c_w_p, dyb,
                      d_ln_c_w_rows + b * H, d_ln_c_b_rows + b * H);
      }
      // through c_t: dA_i, dA_f, dA_g and dc_{t-1}
      const T* cp = cp0 + b * H;
      T* dcb = dc_p + b * H;
      T* dcpb = dcp_p + b * H;
      for (int64_t j = 0; j < H; ++j) dcb[j] += dyb[j];
      if (s.po >= 0) {
        const T* p = peep + s.po * H;
        const T* dgo = dv + s.co * H;
        for (int64_t j = 0; j < H; ++j) dcb[j] += dgo[j] * p[j];
      }
      const T* gg = v + s.cg * H;
      T* dgg = dv + s.cg * H;
      const T* gi = s.ci >= 0 ? v + s.ci * H : nullptr;
      if (gi == nullptr) {
        std::copy(dcb, dcb + H, dgg);
      } else {
        for (int64_t j = 0; j < H; ++j) dgg[j] = dcb[j] * gi[j];
      }
      if (s.in_act) {
        for (int64_t j = 0; j < H; ++j) dgg[j] *= T(1) - gg[j] * gg[j];
      }
      std::copy(dcb, dcb + H, dcpb);
      if (gi != nullptr) {
        T* dgi = dv + s.ci * H;
        if (s.coupled) {
          for (int64_t j = 0; j < H; ++j) {
            dgi[j] = dcb[j] * (gg[j] - cp[j]);
            dcpb[j] = dcb[j] * (T(1) - gi[j]);
          }
        } else {
          for (int64_t j = 0; j < H; ++j) dgi[j] = dcb[j] * gg[j];
        }
        if (ai >= 0) {
          const T* dab = da_p + (b * S + ai) * H;
          for (int64_t j = 0; j < H; ++j) dgi[j] += dab[j];
        }
        for (int64_t j = 0; j < H; ++j) dgi[j] *= gi[j] * (T(1) - gi[j]);
      }
      if (s.cf >= 0) {
        const T* gf = v + s.cf * H;
        T* dgf = dv + s.cf * H;
        for (int64_t j = 0; j < H; ++j) {
          dgf[j] = dcb[j] * cp[j];
          dcpb[j] = dcb[j] * gf[j];
        }
        if (af >= 0) {
          const T* dab = da_p + (b * S + af) * H;
          for (int64_t j = 0; j < H; ++j) dgf[j] += dab[j];
        }
        for (int64_t j = 0; j < H; ++j) dgf[j] *= gf[j] * (T(1) - gf[j]);
      }
      if (s.pi >= 0) {
        const T* p = peep + s.pi * H;
        const T* dgi = dv + s.ci * H;
        for (int64_t j = 0; j < H; ++j) dcpb[j] += dgi[j] * p[j];
      }
      if (s.pf >= 0) {
        const T* p = peep + s.pf * H;
        const T* dgf = dv + s.cf * H;
        for (int64_t j = 0; j < H; ++j) dcpb[j] += dgf[j] * p[j];
      }
      if (q_raw.has_value()) {  // back through the recurrent layer norm
        norm_row_grad(dv, q_raw_p + (t * B + b) * GH, GH, st_p[t * B + b], st_p[(Tn + t) * B + b], ln_hh_p,
                      d_q.data_ptr<T>() + (t * B + b) * GH, d_ln_hh_rows + b * GH, static_cast<T*>(nullptr));
      }
      if (S > 0) {  // FGR: gather the sigmoid gates' dA for da_{t-1} = dA_sig R
        for (int64_t k = 0; k < S; ++k) {
          const T* src = dv + s.sig_cols[k] * H;
          std::copy(src, src + H, d_sig_p + (b * S + k) * H);
        }
      }
    });
    Tensor d_rec = q_raw.has_value() ? d_q[t] : d_pre[t];
    recur(dh_prev, d_rec);
    end_grad(dh_prev.data_ptr<T>(), drop_p, zoned ? dh_kept.data_ptr<T>() : nullptr, live, dhs_p, B, R);
    end_grad<T>(dcp_p, nullptr, zoned ? dc_kept.data_ptr<T>() : nullptr, live, dcs_p, B, H);
    if (S > 0) {
      (*gate_gemm)(da_prev, d_sig);
      end_grad<T>(da_prev.data_ptr<T>(), nullptr, nullptr, live, da_state.data_ptr<T>(), B, S * H);
    }
  }
  if (ln_hh.has_value()) d_ln_hh.copy_(ln_rows_hh.sum(0));
  if (ln_c_w.has_value()) {
    d_ln_c_w.copy_(ln_rows_c[0].sum(0));
    d_ln_c_b.copy_(ln_rows_c[1].sum(0));
  }
}

}  // namespace

// Runs the forward loop over acts (T, B, G*H: the input side, overwritten with the gates) from
// (h0, c0, a0), filling the saved buffers; returns the final (h, c, a).
std::vector<Tensor> lstm_forward(
    Tensor acts, const Tensor& h0, const Tensor& c0, const Tensor& a0, const Tensor& w_hh,
    const OptTensor& w_peep, const OptTensor& w_hr, const OptTensor& w_gate, const OptTensor& ln_hh,
    const OptTensor& ln_c_w, const OptTensor& ln_c_b, const OptTensor& mask, const OptTensor& drop,
    const OptTensor& zone_h, const OptTensor& zone_c, Tensor h_in, Tensor c_in, Tensor c_out,
    const OptTensor& m_all, const OptTensor& a_in, Tensor out, const OptTensor& q_raw,
    const OptTensor& c_norm, Tensor stats, const OptTensor& bias, const std::vector<int64_t>& cols,
    const std::vector<int64_t>& peeps, const std::vector<int64_t>& sig_cols, bool coupled,
    bool in_act, bool out_act, bool reverse) {
  const Spec s = make_spec(cols, peeps, sig_cols, coupled, in_act, out_act);
  TORCH_CHECK(acts.is_contiguous() && h_in.is_contiguous() && out.is_contiguous(), "lstm loop: buffers must be contiguous");
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone(), a = a0.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_forward", [&] {
    forward_impl<scalar_t>(s, reverse, acts, h, c, a, w_hh, contiguous(w_peep), w_hr, w_gate, contiguous(ln_hh),
                           contiguous(ln_c_w), contiguous(ln_c_b), contiguous(mask), contiguous(drop), contiguous(zone_h), contiguous(zone_c),
                           h_in, c_in, c_out, m_all, a_in, out, q_raw, c_norm, stats, contiguous(bias));
  });
  return {h, c, a};
}

// Runs the backward loop from the final states' gradients, filling d_pre (T, B, G*H; d_q with
// the recurrent layer norm, dh_all with a projection); returns the initial states' gradients and
// the layer norms' gain (and cell-LN bias) gradients, summed over steps and rows (undefined if off).
std::vector<Tensor> lstm_backward(
    const Tensor& acts, const Tensor& d_out, const Tensor& d_h, const Tensor& d_c, const Tensor& d_a,
    const Tensor& c_in, const Tensor& c_out, const Tensor& w_hh, const OptTensor& w_peep,
    const OptTensor& w_hr, const OptTensor& w_gate, const OptTensor& ln_hh, const OptTensor& ln_c_w,
    const OptTensor& mask, const OptTensor& drop, const OptTensor& zone_h, const OptTensor& zone_c,
    const OptTensor& q_raw, const OptTensor& c_norm, const Tensor& stats, Tensor d_pre, Tensor d_q,
    const OptTensor& dh_all, const std::vector<int64_t>& cols, const std::vector<int64_t>& peeps,
    const std::vector<int64_t>& sig_cols, bool coupled, bool in_act, bool out_act, bool reverse) {
  const Spec s = make_spec(cols, peeps, sig_cols, coupled, in_act, out_act);
  Tensor dh = d_h.contiguous().clone(), dc = d_c.contiguous().clone(), da = d_a.contiguous().clone();
  Tensor d_ln_hh = ln_hh.has_value() ? at::zeros_like(*ln_hh) : Tensor();
  Tensor d_ln_c_w = ln_c_w.has_value() ? at::zeros_like(*ln_c_w) : Tensor();
  Tensor d_ln_c_b = ln_c_w.has_value() ? at::zeros_like(*ln_c_w) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
    backward_impl<scalar_t>(s, reverse, acts, d_out.contiguous(), dh, dc, da, c_in, c_out, w_hh,
                            contiguous(w_peep), w_hr, w_gate, contiguous(ln_hh), contiguous(ln_c_w),
                            contiguous(mask), contiguous(drop), contiguous(zone_h), contiguous(zone_c), q_raw,
                            c_norm, stats, d_pre, d_q, dh_all, d_ln_hh, d_ln_c_w, d_ln_c_b);
  });
  return {dh, dc, da, d_ln_hh, d_ln_c_w, d_ln_c_b};
}

}  // namespace unrolled
