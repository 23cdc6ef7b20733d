// The time loops of one GRU layer for CPU training, with each step's gate arithmetic fused
// into one pass (used by molvae/recurrent.py, which builds this file on first use).
//
// A step is one matmul (oneDNN, in the weights' dtype) and then all of the step's
// element-wise work. Written as torch ops, that work is about eight forward and fifteen
// backward passes over [batch, hidden] tensors plus casts between bf16 and fp32, and on the
// project's 2-core AMX machine those passes took more time than the matmuls.
// Same equations, saved tensors and dtypes as the torch-op loop in recurrent.py: hidden
// state and gates in fp32, gate gradients stored in the weights' dtype, both casts rounding
// to nearest even.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

// bf16 values travel as their bit patterns: the compiler vectorizes loops over a plain
// integer type, not over at::BFloat16's class.
using bf16 = uint16_t;

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const bf16* p, int64_t i) { return bits_to_float(uint32_t(p[i]) << 16); }

inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(bf16* p, int64_t i, float v) {
  // Round to nearest even, as torch's cast does. A NaN stays a NaN, so that a bad step is
  // still seen as one.
  const uint32_t u = float_to_bits(v);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  p[i] = bf16((u & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u : rounded);
}

// exp(x), written so that the gate loops vectorize (a call to libm's expf would not):
// range reduction by ln 2, with k rounded by the 1.5·2^23 trick that also leaves k in the
// low bits, and a degree-6 Taylor polynomial on |r| <= ln2/2 (relative error about 1e-7).
// A NaN propagates: the clamps are comparisons, not fmin/fmax.
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float k = t - 12582912.0f;
  const uint32_t two_k = (float_to_bits(t) - 0x4B400000u + 127u) << 23;
  float r = x - k * 0.693145751953125f;  // ln 2 in two parts; k·ln2_hi is exact
  r = r - k * 1.428606765330187045e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * bits_to_float(two_k);
}

inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }
inline float tanh_(float x) { return 1.0f - 2.0f / (1.0f + fast_exp(2.0f * x)); }

template <typename S>
S* ptr(const at::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

// Rows per task: about 16k elements, so that two threads share a batch evenly.
int64_t grain(int64_t hidden) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(hidden, 1)); }

// One batch row of one forward step. xp: x·W_ihᵀ in the weights' dtype; bias: b_ih plus the
// r, z halves of b_hh; g: h·W_hhᵀ. Restrict pointers and no branches let the loop vectorize.
template <typename S, bool kMixed>
void forward_row(const S* __restrict xp, const float* __restrict bias, const S* __restrict g,
                 const float* __restrict bhn, const float* __restrict hp, float* __restrict rz,
                 float* __restrict hh, float* __restrict nn, float* __restrict hout, S* __restrict hcd,
                 int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float r = sigmoid(load(xp, j) + bias[j] + load(g, j));
    const float z = sigmoid(load(xp, H + j) + bias[H + j] + load(g, H + j));
    const float hn = load(g, 2 * H + j) + bhn[j];
    const float n = tanh_(load(xp, 2 * H + j) + bias[2 * H + j] + r * hn);
    const float h = n + z * (hp[j] - n);
    rz[j] = r;
    rz[H + j] = z;
    hh[j] = hn;
    nn[j] = n;
    hout[j] = h;
    if (kMixed) store(hcd, j, h);
  }
}

template <typename S>
void forward_loop(const at::Tensor& xp, const at::Tensor& bias, const at::Tensor& w_hh, const at::Tensor& b_hn,
                  const at::Tensor& hs, const at::Tensor& hs_cd, const at::Tensor& rz_all,
                  const at::Tensor& n_all, const at::Tensor& hn_all) {
  constexpr bool kMixed = !std::is_same<S, float>::value;
  const int64_t T = xp.size(0), B = xp.size(1), H = w_hh.size(1);
  at::Tensor hg = at::empty({B, 3 * H}, w_hh.options());
  const at::Tensor w_t = w_hh.t();
  const float* bs = ptr<const float>(bias);
  const float* bhn = ptr<const float>(b_hn);
  for (int64_t t = 0; t < T; ++t) {
    at::mm_out(hg, hs_cd[t], w_t);
    const S* x = ptr<const S>(xp) + t * B * 3 * H;
    const S* g = ptr<const S>(hg);
    const float* hp = ptr<const float>(hs) + t * B * H;
    float* hout = ptr<float>(hs) + (t + 1) * B * H;
    S* hcd = ptr<S>(hs_cd) + (t + 1) * B * H;
    float* rz = ptr<float>(rz_all) + t * B * 2 * H;
    float* nn = ptr<float>(n_all) + t * B * H;
    float* hh = ptr<float>(hn_all) + t * B * H;
    at::parallel_for(0, B, grain(H), [=](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        forward_row<S, kMixed>(x + b * 3 * H, bs, g + b * 3 * H, bhn, hp + b * H, rz + b * 2 * H, hh + b * H,
                               nn + b * H, hout + b * H, hcd + b * H, H);
    });
  }
}

// One batch row of one backward step: adds the incoming gradients into dh (the carried
// dh ⊙ z, the previous step's recurrent matmul, this step's output gradient), writes the
// gate gradients [n_x | r | z | n_h] and carries dh ⊙ z on to the step before.
template <typename S, typename D, bool kMm, bool kDout>
void backward_row(float* __restrict carry, const S* __restrict mm, const D* __restrict dout,
                  const float* __restrict rz, const float* __restrict nn, const float* __restrict hh,
                  const float* __restrict hp, S* __restrict g, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    float dh = carry[j];
    if (kMm) dh += load(mm, j);
    if (kDout) dh += load(dout, j);
    const float r = rz[j], z = rz[H + j], n = nn[j];
    const float dpre_n = (dh - dh * z) * (1.0f - n * n);  // through (1 − z) and tanh
    store(g, j, dpre_n);
    store(g, H + j, (dpre_n * hh[j]) * (r - r * r));
    store(g, 2 * H + j, (dh * (hp[j] - n)) * (z - z * z));
    store(g, 3 * H + j, dpre_n * r);
    carry[j] = dh * z;
  }
}

template <typename S, typename D>
void backward_loop(const D* dout, at::Tensor carry, const at::Tensor& w_hh, const at::Tensor& hs,
                   const at::Tensor& rz_all, const at::Tensor& n_all, const at::Tensor& hn_all,
                   const at::Tensor& grads, at::Tensor dmm) {
  const int64_t T = rz_all.size(0), B = rz_all.size(1), H = w_hh.size(1);
  float* c = ptr<float>(carry);
  const S* m = ptr<const S>(dmm);
  for (int64_t t = T - 1; t >= 0; --t) {
    const S* mt = t < T - 1 ? m : nullptr;
    const D* dt = dout ? dout + t * B * H : nullptr;
    const float* rz = ptr<const float>(rz_all) + t * B * 2 * H;
    const float* nn = ptr<const float>(n_all) + t * B * H;
    const float* hh = ptr<const float>(hn_all) + t * B * H;
    const float* hp = ptr<const float>(hs) + t * B * H;
    S* g = ptr<S>(grads) + t * B * 4 * H;
    // The branch is taken once per step, so that each row's loop has none.
    auto row = mt ? (dt ? backward_row<S, D, true, true> : backward_row<S, D, true, false>)
                  : (dt ? backward_row<S, D, false, true> : backward_row<S, D, false, false>);
    at::parallel_for(0, B, grain(H), [=](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        row(c + b * H, mt ? mt + b * H : nullptr, dt ? dt + b * H : nullptr, rz + b * 2 * H, nn + b * H,
            hh + b * H, hp + b * H, g + b * 4 * H, H);
    });
    at::mm_out(dmm, grads[t].narrow(1, H, 3 * H), w_hh);
  }
  carry.add_(dmm);  // d h0: the carried gradient plus the last recurrent matmul's
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "molvae GRU kernel: ", what); }

bool is_compute_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

}  // namespace

// xp [T, B, 3H]: x·W_ihᵀ in the weights' dtype (fp32 or bf16); bias [3H] fp32: b_ih plus
// the r, z halves of b_hh; h0 [B, H] fp32; w_hh [3H, H]; b_hn [H] fp32.
// Returns hs [T+1, B, H] fp32, hs in the weights' dtype (the same tensor for fp32 weights),
// σ of the r and z gates [T, B, 2H], n [T, B, H] and W_hn·h + b_hn [T, B, H], all fp32.
std::vector<at::Tensor> gru_forward(const at::Tensor& xp, const at::Tensor& bias, const at::Tensor& h0,
                                    const at::Tensor& w_hh, const at::Tensor& b_hn) {
  check(xp.device().is_cpu() && w_hh.device().is_cpu(), "CPU tensors only");
  check(is_compute_dtype(w_hh) && xp.scalar_type() == w_hh.scalar_type(), "xp and w_hh: both fp32 or both bf16");
  check(xp.dim() == 3 && xp.is_contiguous() && w_hh.dim() == 2 && w_hh.is_contiguous(),
        "xp [T, B, 3H] and w_hh [3H, H] must be contiguous");
  const int64_t T = xp.size(0), B = xp.size(1), H = w_hh.size(1);
  check(xp.size(2) == 3 * H && w_hh.size(0) == 3 * H, "shapes of xp and w_hh disagree");
  check(bias.scalar_type() == at::kFloat && bias.is_contiguous() && bias.numel() == 3 * H, "bias must be fp32 [3H]");
  check(b_hn.scalar_type() == at::kFloat && b_hn.is_contiguous() && b_hn.numel() == H, "b_hn must be fp32 [H]");
  check(h0.dim() == 2 && h0.size(0) == B && h0.size(1) == H, "h0 must be [B, H]");
  const auto f32 = h0.options().dtype(at::kFloat);
  at::Tensor hs = at::empty({T + 1, B, H}, f32);
  hs[0].copy_(h0);
  const bool mixed = w_hh.scalar_type() != at::kFloat;
  at::Tensor hs_cd = mixed ? at::empty({T + 1, B, H}, w_hh.options()) : hs;
  if (mixed) hs_cd[0].copy_(hs[0]);
  at::Tensor rz_all = at::empty({T, B, 2 * H}, f32);
  at::Tensor n_all = at::empty({T, B, H}, f32);
  at::Tensor hn_all = at::empty({T, B, H}, f32);
  if (mixed)
    forward_loop<bf16>(xp, bias, w_hh, b_hn, hs, hs_cd, rz_all, n_all, hn_all);
  else
    forward_loop<float>(xp, bias, w_hh, b_hn, hs, hs_cd, rz_all, n_all, hn_all);
  return {hs, hs_cd, rz_all, n_all, hn_all};
}

// d_out [T, B, H] (fp32 or bf16) and d_last [B, H]: the gradients of the outputs and of the
// last state (either may be None). Returns the gate gradients [T, B, 4H] in the weights'
// dtype, laid out [n_x | r | z | n_h] per row, and the gradient of h0 [B, H] in fp32.
std::vector<at::Tensor> gru_backward(const c10::optional<at::Tensor>& d_out, const c10::optional<at::Tensor>& d_last,
                                     const at::Tensor& w_hh, const at::Tensor& hs, const at::Tensor& rz_all,
                                     const at::Tensor& n_all, const at::Tensor& hn_all) {
  check(is_compute_dtype(w_hh) && w_hh.is_contiguous(), "w_hh must be contiguous fp32 or bf16");
  check(hs.is_contiguous() && rz_all.is_contiguous() && n_all.is_contiguous() && hn_all.is_contiguous(),
        "saved tensors must be contiguous");
  const int64_t T = rz_all.size(0), B = rz_all.size(1), H = w_hh.size(1);
  const auto f32 = hs.options();
  at::Tensor dout;
  if (d_out.has_value() && d_out->defined()) {
    dout = is_compute_dtype(*d_out) ? d_out->contiguous() : d_out->to(at::kFloat).contiguous();
    check(dout.dim() == 3 && dout.size(0) == T && dout.size(1) == B && dout.size(2) == H, "d_out must be [T, B, H]");
  }
  at::Tensor carry = (d_last.has_value() && d_last->defined()) ? d_last->to(at::kFloat).contiguous().clone()
                                                               : at::zeros({B, H}, f32);
  at::Tensor grads = at::empty({T, B, 4 * H}, w_hh.options());
  at::Tensor dmm = at::zeros({B, H}, w_hh.options());
  const bool mixed = w_hh.scalar_type() == at::kBFloat16;
  const bool dout_bf16 = dout.defined() && dout.scalar_type() == at::kBFloat16;
  if (mixed && dout_bf16)
    backward_loop<bf16, bf16>(ptr<const bf16>(dout), carry, w_hh, hs, rz_all, n_all, hn_all, grads, dmm);
  else if (mixed)
    backward_loop<bf16, float>(dout.defined() ? ptr<const float>(dout) : nullptr, carry, w_hh, hs, rz_all, n_all,
                               hn_all, grads, dmm);
  else if (dout_bf16)
    backward_loop<float, bf16>(ptr<const bf16>(dout), carry, w_hh, hs, rz_all, n_all, hn_all, grads, dmm);
  else
    backward_loop<float, float>(dout.defined() ? ptr<const float>(dout) : nullptr, carry, w_hh, hs, rz_all, n_all,
                                hn_all, grads, dmm);
  return {grads, carry};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "Forward time loop of one GRU layer (fp32 state)");
  m.def("gru_backward", &gru_backward, "Backward time loop of one GRU layer");
}
