// The time loops of one GRU layer for CPU training, with each step's gate arithmetic fused
// into one pass (used by molvae/recurrent.py, which builds this file on first use).
//
// A step is one matmul (oneDNN, in the weights' dtype) and then all of the step's
// element-wise work. Written as torch ops, that work is about eight forward and fifteen
// backward passes over [batch, hidden] tensors plus casts between bf16 and fp32, and on the
// project's 2-core AMX machine those passes took more time than the matmuls.
// Same equations, saved tensors and dtypes as the torch-op loop in recurrent.py: the hidden
// state, the gates and the gradient carried through time in fp32; the states as the backward
// pass reads them, W_hn·h + b_hn and the gate gradients stored in the weights' dtype, all
// casts rounding to nearest even.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// d[j, i] = s[i, j] for i < R, j < C (leading dimensions ls, ld), in 32×32 tiles that stay
// in cache.
template <typename E>
void transpose_tiles(const E* __restrict s, int64_t ls, E* __restrict d, int64_t ld, int64_t R, int64_t C) {
  constexpr int64_t kTile = 32;
  for (int64_t i0 = 0; i0 < R; i0 += kTile) {
    const int64_t i1 = std::min(R, i0 + kTile);
    for (int64_t j0 = 0; j0 < C; j0 += kTile) {
      const int64_t j1 = std::min(C, j0 + kTile);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) d[j * ld + i] = s[i * ls + j];
    }
  }
}

template <typename E>
void transpose_block(const E* s, int64_t ls, E* d, int64_t ld, int64_t R, int64_t C) {
  transpose_tiles(s, ls, d, ld, R, C);
}

#if defined(__SSE2__)
// 2-byte elements (bf16) in 8×8 blocks of SSE2 unpacks (three rounds: 16-, 32-, 64-bit
// interleaves), the edges element by element. The compiler leaves the plain loop scalar: a
// [24064, 512] bf16 copy took 4.1 ms on the project's 2-core machine, 1.7 ms this way.
inline void transpose8x8(const uint16_t* s, int64_t ls, uint16_t* d, int64_t ld) {
  __m128i r[8], a[8], b[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + k * ls));
  for (int k = 0; k < 4; ++k) {
    a[2 * k] = _mm_unpacklo_epi16(r[2 * k], r[2 * k + 1]);
    a[2 * k + 1] = _mm_unpackhi_epi16(r[2 * k], r[2 * k + 1]);
  }
  // b[q]: rows 0-3 (q < 4) or 4-7 of columns 2(q mod 4), 2(q mod 4)+1.
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 2; ++k) {
      b[4 * h + 2 * k] = _mm_unpacklo_epi32(a[4 * h + k], a[4 * h + k + 2]);
      b[4 * h + 2 * k + 1] = _mm_unpackhi_epi32(a[4 * h + k], a[4 * h + k + 2]);
    }
  for (int q = 0; q < 4; ++q) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + (2 * q) * ld), _mm_unpacklo_epi64(b[q], b[q + 4]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + (2 * q + 1) * ld), _mm_unpackhi_epi64(b[q], b[q + 4]));
  }
}

template <>
void transpose_block<uint16_t>(const uint16_t* s, int64_t ls, uint16_t* d, int64_t ld, int64_t R, int64_t C) {
  constexpr int64_t kTile = 32;
  const int64_t R8 = R - R % 8, C8 = C - C % 8;
  for (int64_t i0 = 0; i0 < R8; i0 += kTile)
    for (int64_t j0 = 0; j0 < C8; j0 += kTile)
      for (int64_t j = j0; j < std::min(C8, j0 + kTile); j += 8)
        for (int64_t i = i0; i < std::min(R8, i0 + kTile); i += 8) transpose8x8(s + i * ls + j, ls, d + j * ld + i, ld);
  transpose_tiles(s + R8 * ls, ls, d + R8, ld, R - R8, C);  // the last rows, all columns
  transpose_tiles(s + C8, ls, d + C8 * ld, ld, R8, C - C8);  // the last columns of the other rows
}
#endif

// The weight-gradient matmuls read the layer's input and states transposed ([H, T·B]): as
// the left operand row-major, they ran about twice as fast on AMX as with the wide gate
// gradient buffer read transposed (docs/PERFORMANCE.md).
template <typename E>
void transpose_into(const E* s, int64_t ls, E* d, int64_t ld, int64_t R, int64_t C) {
  constexpr int64_t kRows = 32;
  at::parallel_for(0, (R + kRows - 1) / kRows, 1, [=](int64_t b0, int64_t b1) {
    const int64_t i0 = b0 * kRows, i1 = std::min(R, b1 * kRows);
    transpose_block(s + i0 * ls, ls, d + i0, ld, i1 - i0, C);
  });
}

// One batch row of one forward step. xp: x·W_ihᵀ (X: fp32 or the weights' dtype S); bias:
// b_ih plus the r, z halves of b_hh; g: h·W_hhᵀ; hp: the fp32 state before the step. With
// kSave (training), saves the gates r, z and n in fp32 and W_hn·h + b_hn in the weights'
// dtype. Writes the new fp32 state to hout and, with mixed dtypes, its rounded copy to hcd.
// Restrict pointers and no branches let the loop vectorize.
template <typename X, typename S, bool kMixed, bool kSave>
void forward_row(const X* __restrict xp, const float* __restrict bias, const S* __restrict g,
                 const float* __restrict bhn, const float* __restrict hp, float* __restrict rz,
                 float* __restrict nn, S* __restrict hh, float* __restrict hout, S* __restrict hcd, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float r = sigmoid(load(xp, j) + bias[j] + load(g, j));
    const float z = sigmoid(load(xp, H + j) + bias[H + j] + load(g, H + j));
    const float hn = load(g, 2 * H + j) + bhn[j];
    const float n = tanh_(load(xp, 2 * H + j) + bias[2 * H + j] + r * hn);
    const float h = n + z * (hp[j] - n);
    if (kSave) {
      rz[j] = r;
      rz[H + j] = z;
      nn[j] = n;
      store(hh, j, hn);
    }
    hout[j] = h;
    if (kMixed) store(hcd, j, h);
  }
}

// torch's oneDNN linear on a weight reordered once into its blocked layout (the private ops
// torch.compile uses for frozen CPU weights), or nullptr where they are missing or, probed
// once on a small product against at::mm, fail or disagree (another torch build).
struct PackedLinearOps {
  const c10::OperatorHandle* reorder = nullptr;
  const c10::OperatorHandle* linear = nullptr;
};

at::Tensor call_op(const c10::OperatorHandle* op, std::vector<c10::IValue> stack) {
  op->callBoxed(&stack);
  return stack.at(0).toTensor();
}

at::Tensor packed_weight(const PackedLinearOps& ops, const at::Tensor& w, int64_t batch) {
  return call_op(ops.reorder, {w, c10::IValue(batch)});
}

at::Tensor packed_product(const PackedLinearOps& ops, const at::Tensor& h, const at::Tensor& packed) {
  return call_op(ops.linear, {h, packed, c10::IValue(), c10::IValue(std::string("none")),
                              c10::IValue(c10::List<std::optional<at::Scalar>>()), c10::IValue()});
}

const PackedLinearOps& packed_linear_ops() {
  static const PackedLinearOps ops = [] {
    static const auto reorder = c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""});
    static const auto linear = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    PackedLinearOps found;
    if (!reorder || !linear) return found;
    found.reorder = &*reorder;
    found.linear = &*linear;
    try {
      // Fixed values: the global random generator must not move (runs resume exactly).
      const at::Tensor w = at::linspace(-1.0, 1.0, 48 * 16).reshape({48, 16}).to(at::kBFloat16);
      const at::Tensor h = at::linspace(1.0, -0.5, 8 * 16).reshape({8, 16}).to(at::kBFloat16);
      const at::Tensor got = packed_product(found, h, packed_weight(found, w, 8));
      if (got.sizes() == at::IntArrayRef({8, 48}) && got.is_contiguous() &&
          at::allclose(got.to(at::kFloat), at::mm(h, w.t()).to(at::kFloat), 0.02, 0.05))
        return found;
      TORCH_WARN_ONCE("molvae GRU kernel: torch's packed oneDNN linear disagreed with at::mm; using plain matmuls");
    } catch (const c10::Error& e) {
      TORCH_WARN_ONCE("molvae GRU kernel: torch's packed oneDNN linear failed (", e.what_without_backtrace(),
                      "); using plain matmuls");
    }
    return PackedLinearOps{};
  }();
  return ops;
}

// w [out, in] packed once for packed_product, laid out for `batch` rows; an undefined tensor
// where w is not bf16 (in fp32 packing did not pay) or torch lacks the ops.
at::Tensor pack_if_bf16(const at::Tensor& w, int64_t batch) {
  if (w.scalar_type() != at::kBFloat16 || packed_linear_ops().linear == nullptr) return at::Tensor();
  return packed_weight(packed_linear_ops(), w, batch);
}

// h·W_hhᵀ for every forward step of a layer: with W_hh packed once where torch has the ops
// (bf16), as a plain matmul reorders it again at every step (about 10% of the forward
// loop's time on the project's AMX machine).
class RecurrentProduct {
 public:
  RecurrentProduct(const at::Tensor& w_hh, int64_t batch) : w_t_(w_hh.t()), packed_(pack_if_bf16(w_hh, batch)) {}
  void operator()(at::Tensor& out, const at::Tensor& h) const {
    if (packed_.defined())
      out = packed_product(packed_linear_ops(), h, packed_).contiguous();  // the gate loop indexes rows
    else
      at::mm_out(out, h, w_t_);
  }

 private:
  at::Tensor w_t_, packed_;
};

// states: the fp32 states, [T+1, B, H] when S is float (then the same tensor as hs_cd), else
// two [B, H] slots used in turn (the bf16 copies in hs_cd are what the backward pass reads).
template <typename S>
void forward_loop(const at::Tensor& xp, const at::Tensor& bias, const at::Tensor& w_hh, const at::Tensor& b_hn,
                  const at::Tensor& states, const at::Tensor& hs_cd, const at::Tensor& rz_all,
                  const at::Tensor& n_all, const at::Tensor& hn_all, const at::Tensor& hs_t) {
  constexpr bool kMixed = !std::is_same<S, float>::value;
  const int64_t T = xp.size(0), B = xp.size(1), H = w_hh.size(1);
  at::Tensor hg = at::empty({B, 3 * H}, w_hh.options());
  const RecurrentProduct product(w_hh, B);
  const float* bs = ptr<const float>(bias);
  const float* bhn = ptr<const float>(b_hn);
  for (int64_t t = 0; t < T; ++t) {
    product(hg, hs_cd[t]);
    const S* x = ptr<const S>(xp) + t * B * 3 * H;
    const S* g = ptr<const S>(hg);
    const float* hp = ptr<const float>(states) + (kMixed ? t % 2 : t) * B * H;
    float* hout = ptr<float>(states) + (kMixed ? (t + 1) % 2 : t + 1) * B * H;
    S* hcd = ptr<S>(hs_cd) + (t + 1) * B * H;
    float* rz = ptr<float>(rz_all) + t * B * 2 * H;
    float* nn = ptr<float>(n_all) + t * B * H;
    S* hh = ptr<S>(hn_all) + t * B * H;
    at::parallel_for(0, B, grain(H), [=](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        forward_row<S, S, kMixed, true>(x + b * 3 * H, bs, g + b * 3 * H, bhn, hp + b * H, rz + b * 2 * H, nn + b * H,
                                        hh + b * H, hout + b * H, hcd + b * H, H);
    });
  }
  // States h_0 .. h_{T-1} transposed, [H, T·B], for the weight gradient.
  transpose_into(ptr<const S>(hs_cd), H, ptr<S>(hs_t), T * B, T * B, H);
}

// One batch row of one backward step: adds the incoming gradients into dh (the carried
// dh ⊙ z, the previous step's recurrent matmul, this step's output gradient), writes the
// gate gradients [n_x | r | z | n_h], adds them as stored (rounded) into the column sums
// `acc`, and carries dh ⊙ z on to the step before. hp: the state before the step, as
// rounded to the weights' dtype.
template <typename S, typename D, bool kMm, bool kDout>
void backward_row(float* __restrict carry, const S* __restrict mm, const D* __restrict dout,
                  const float* __restrict rz, const float* __restrict nn, const S* __restrict hh,
                  const S* __restrict hp, S* __restrict g, float* __restrict acc, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    float dh = carry[j];
    if (kMm) dh += load(mm, j);
    if (kDout) dh += load(dout, j);
    const float r = rz[j], z = rz[H + j], n = nn[j];
    const float dpre_n = (dh - dh * z) * (1.0f - n * n);  // through (1 − z) and tanh
    store(g, j, dpre_n);
    store(g, H + j, (dpre_n * load(hh, j)) * (r - r * r));
    store(g, 2 * H + j, (dh * (load(hp, j) - n)) * (z - z * z));
    store(g, 3 * H + j, dpre_n * r);
    carry[j] = dh * z;
  }
  // A separate pass over the row just written (still in L1): inside the loop above, the
  // extra accumulators kept it from vectorizing (backward steps took 25% longer).
  for (int64_t j = 0; j < 4 * H; ++j) acc[j] += load(g, j);
}

// out = a·w, with a's rows in `rows`-sized pieces.
void mm_rows(at::Tensor& out, const at::Tensor& a, const at::Tensor& w, int64_t rows) {
  for (int64_t b = 0; b < a.size(0); b += rows) {
    const int64_t n = std::min(rows, a.size(0) - b);
    at::Tensor part = out.narrow(0, b, n);
    at::mm_out(part, a.narrow(0, b, n), w);
  }
}

// Rows per call for the backward step's recurrent matmul. oneDNN runs some shapes far below
// its usual rate: on the project's 2-core AMX machine [512, 1536]·[1536, 512] in bf16 ran at
// 1.26 TFLOP/s, its two 256-row halves at 1.9 (bitwise the same product), while for
// [512, 768]·[768, 256] halving was slower. So the first backward step of each shape times
// the whole matmul against two halves (three alternating tries each, best of three) and the
// faster choice is kept for the process.
int64_t recurrent_rows(at::Tensor& out, const at::Tensor& a, const at::Tensor& w) {
  static std::mutex lock;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int>, int64_t> chosen;
  const auto key = std::make_tuple(a.size(0), a.size(1), w.size(1), static_cast<int>(a.scalar_type()));
  std::lock_guard<std::mutex> guard(lock);
  const auto found = chosen.find(key);
  if (found != chosen.end()) return found->second;
  const int64_t whole = a.size(0), half = (whole + 1) / 2;
  int64_t best = whole;
  if (half >= 64) {
    double t_whole = 1e30, t_half = 1e30;
    for (int k = 0; k < 3; ++k)
      for (const int64_t rows : {whole, half}) {
        const auto t0 = std::chrono::steady_clock::now();
        mm_rows(out, a, w, rows);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double& slot = rows == whole ? t_whole : t_half;
        slot = std::min(slot, dt);
      }
    best = t_half < t_whole ? half : whole;
  }
  chosen[key] = best;
  return best;
}

template <typename S, typename D>
void backward_loop(const D* dout, at::Tensor carry, const at::Tensor& w_hh, const at::Tensor& hs_cd,
                   const at::Tensor& rz_all, const at::Tensor& n_all, const at::Tensor& hn_all,
                   const at::Tensor& grads, at::Tensor dmm, const at::Tensor& sums) {
  const int64_t T = rz_all.size(0), B = rz_all.size(1), H = w_hh.size(1);
  // Rows go in fixed blocks, each with its own column sums, added up in block order at the
  // end: the bias gradients then do not depend on the thread count.
  const int64_t rows = grain(H), blocks = (B + rows - 1) / rows;
  at::Tensor block_sums = at::zeros({blocks, 4 * H}, sums.options());
  float* acc = ptr<float>(block_sums);
  float* c = ptr<float>(carry);
  const S* m = ptr<const S>(dmm);
  int64_t rows_each = 0;
  for (int64_t t = T - 1; t >= 0; --t) {
    const S* mt = t < T - 1 ? m : nullptr;
    const D* dt = dout ? dout + t * B * H : nullptr;
    const float* rz = ptr<const float>(rz_all) + t * B * 2 * H;
    const float* nn = ptr<const float>(n_all) + t * B * H;
    const S* hh = ptr<const S>(hn_all) + t * B * H;
    const S* hp = ptr<const S>(hs_cd) + t * B * H;
    S* g = ptr<S>(grads) + t * B * 4 * H;
    // The branch is taken once per step, so that each row's loop has none.
    auto row = mt ? (dt ? backward_row<S, D, true, true> : backward_row<S, D, true, false>)
                  : (dt ? backward_row<S, D, false, true> : backward_row<S, D, false, false>);
    at::parallel_for(0, blocks, 1, [=](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t b = k * rows; b < std::min(B, (k + 1) * rows); ++b)
          row(c + b * H, mt ? mt + b * H : nullptr, dt ? dt + b * H : nullptr, rz + b * 2 * H, nn + b * H,
              hh + b * H, hp + b * H, g + b * 4 * H, acc + k * 4 * H, H);
    });
    const at::Tensor g_hidden = grads[t].narrow(1, H, 3 * H);
    if (rows_each == 0) rows_each = recurrent_rows(dmm, g_hidden, w_hh);
    mm_rows(dmm, g_hidden, w_hh, rows_each);
  }
  carry.add_(dmm);  // d h0: the carried gradient plus the last recurrent matmul's
  float* out = ptr<float>(sums);
  for (int64_t k = 0; k < blocks; ++k)
    for (int64_t j = 0; j < 4 * H; ++j) out[j] += acc[k * 4 * H + j];
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "molvae GRU kernel: ", what); }

bool is_compute_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

}  // namespace

// xp [T, B, 3H]: x·W_ihᵀ in the weights' dtype (fp32 or bf16); bias [3H] fp32: b_ih plus
// the r, z halves of b_hh; h0 [B, H] fp32; w_hh [3H, H]; b_hn [H] fp32.
// Returns the last state [B, H] in fp32; the states hs [T+1, B, H] in the weights' dtype
// (h0 first; with bf16 weights rounded from the fp32 recurrence); the gates σ(r), σ(z)
// [T, B, 2H] and n [T, B, H] in fp32; W_hn·h + b_hn [T, B, H] and h_0 .. h_{T-1}
// transposed, [H, T·B], in the weights' dtype.
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
  const bool mixed = w_hh.scalar_type() != at::kFloat;
  const auto f32 = h0.options().dtype(at::kFloat);
  at::Tensor hs_cd = at::empty({T + 1, B, H}, w_hh.options());
  // The fp32 states: with bf16 weights two [B, H] slots used in turn, else hs_cd itself.
  at::Tensor states = mixed ? at::empty({2, B, H}, f32) : hs_cd;
  states[0].copy_(h0);
  if (mixed) hs_cd[0].copy_(states[0]);
  at::Tensor rz_all = at::empty({T, B, 2 * H}, f32);
  at::Tensor n_all = at::empty({T, B, H}, f32);
  at::Tensor hn_all = at::empty({T, B, H}, w_hh.options());
  at::Tensor hs_t = at::empty({H, T * B}, w_hh.options());
  if (mixed)
    forward_loop<bf16>(xp, bias, w_hh, b_hn, states, hs_cd, rz_all, n_all, hn_all, hs_t);
  else
    forward_loop<float>(xp, bias, w_hh, b_hn, states, hs_cd, rz_all, n_all, hn_all, hs_t);
  at::Tensor last = mixed ? states[T % 2].clone() : states[T].clone();
  return {last, hs_cd, rz_all, n_all, hn_all, hs_t};
}

// d_out [T, B, H] (fp32 or bf16) and d_last [B, H]: the gradients of the outputs and of the
// last state (either may be None); hs, rz_all, n_all, hn_all as gru_forward returned them.
// Returns the gate gradients [T, B, 4H] in the weights' dtype, laid out [n_x | r | z | n_h]
// per row, the gradient of h0 [B, H] in fp32, and the column sums of the gate gradients
// [4H] in fp32 (for the bias gradients).
std::vector<at::Tensor> gru_backward(const c10::optional<at::Tensor>& d_out, const c10::optional<at::Tensor>& d_last,
                                     const at::Tensor& w_hh, const at::Tensor& hs, const at::Tensor& rz_all,
                                     const at::Tensor& n_all, const at::Tensor& hn_all) {
  check(is_compute_dtype(w_hh) && w_hh.is_contiguous(), "w_hh must be contiguous fp32 or bf16");
  check(hs.is_contiguous() && rz_all.is_contiguous() && n_all.is_contiguous() && hn_all.is_contiguous(),
        "saved tensors must be contiguous");
  check(hs.scalar_type() == w_hh.scalar_type() && hn_all.scalar_type() == w_hh.scalar_type() &&
        rz_all.scalar_type() == at::kFloat && n_all.scalar_type() == at::kFloat,
        "saved tensors: hs and hn_all in the weights' dtype, rz_all and n_all in fp32");
  const int64_t T = rz_all.size(0), B = rz_all.size(1), H = w_hh.size(1);
  const auto f32 = rz_all.options();
  at::Tensor dout;
  if (d_out.has_value() && d_out->defined()) {
    dout = is_compute_dtype(*d_out) ? d_out->contiguous() : d_out->to(at::kFloat).contiguous();
    check(dout.dim() == 3 && dout.size(0) == T && dout.size(1) == B && dout.size(2) == H, "d_out must be [T, B, H]");
  }
  at::Tensor carry = (d_last.has_value() && d_last->defined()) ? d_last->to(at::kFloat).contiguous().clone()
                                                               : at::zeros({B, H}, f32);
  at::Tensor grads = at::empty({T, B, 4 * H}, w_hh.options());
  at::Tensor dmm = at::zeros({B, H}, w_hh.options());
  at::Tensor sums = at::zeros({4 * H}, f32);
  const bool mixed = w_hh.scalar_type() == at::kBFloat16;
  const bool dout_bf16 = dout.defined() && dout.scalar_type() == at::kBFloat16;
  const auto loop = [&](auto* out, auto state) {
    using S = decltype(state);
    backward_loop<S>(out, carry, w_hh, hs, rz_all, n_all, hn_all, grads, dmm, sums);
  };
  if (mixed && dout_bf16)
    loop(ptr<const bf16>(dout), bf16{});
  else if (mixed)
    loop(dout.defined() ? ptr<const float>(dout) : nullptr, bf16{});
  else if (dout_bf16)
    loop(ptr<const bf16>(dout), float{});
  else
    loop(dout.defined() ? ptr<const float>(dout) : nullptr, float{});
  return {grads, carry, sums};
}

// One GRU step for decoding, with nothing saved. xg [B, 3H]: the input side of the gates, fp32
// or the weights' dtype; hg [B, 3H]: h·W_hhᵀ in the weights' dtype (fp32 or bf16); h [B, H]
// fp32; bias [3H] fp32: added to xg, with the r, z halves of b_hh in it; b_hn [H] fp32;
// h_out [B, H] fp32 receives the new state. Returns the new state in the weights' dtype
// (h_out itself with fp32 weights), as the next matmuls read it.
at::Tensor gru_cell(const at::Tensor& xg, const at::Tensor& hg, const at::Tensor& h, const at::Tensor& bias,
                    const at::Tensor& b_hn, at::Tensor h_out) {
  check(xg.device().is_cpu() && hg.device().is_cpu(), "CPU tensors only");
  check(is_compute_dtype(hg) && is_compute_dtype(xg) && (xg.scalar_type() == at::kFloat ||
        xg.scalar_type() == hg.scalar_type()), "xg fp32 or in hg's dtype; hg fp32 or bf16");
  check(hg.dim() == 2 && hg.is_contiguous() && xg.sizes() == hg.sizes() && xg.is_contiguous() &&
        hg.size(1) % 3 == 0, "xg and hg must be contiguous [B, 3H]");
  const int64_t B = hg.size(0), H = hg.size(1) / 3;
  const auto is_state = [&](const at::Tensor& t) {
    return t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == 2 && t.size(0) == B && t.size(1) == H;
  };
  check(is_state(h) && is_state(h_out), "h and h_out must be contiguous fp32 [B, H]");
  check(bias.scalar_type() == at::kFloat && bias.is_contiguous() && bias.numel() == 3 * H, "bias must be fp32 [3H]");
  check(b_hn.scalar_type() == at::kFloat && b_hn.is_contiguous() && b_hn.numel() == H, "b_hn must be fp32 [H]");
  const bool mixed = hg.scalar_type() == at::kBFloat16;
  at::Tensor out = mixed ? at::empty({B, H}, hg.options()) : h_out;
  const float* bs = ptr<const float>(bias);
  const float* bhn = ptr<const float>(b_hn);
  const float* hp = ptr<const float>(h);
  float* ho = ptr<float>(h_out);
  const auto run = [&](auto* x, auto* g, auto* hcd, auto mixed_tag) {
    using X = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
    using S = std::remove_pointer_t<decltype(hcd)>;
    constexpr bool kMixed = decltype(mixed_tag)::value;
    at::parallel_for(0, B, grain(H), [=](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        forward_row<X, S, kMixed, false>(x + b * 3 * H, bs, g + b * 3 * H, bhn, hp + b * H, nullptr, nullptr,
                                         nullptr, ho + b * H, hcd + b * H, H);
    });
  };
  if (!mixed)
    run(ptr<const float>(xg), ptr<const float>(hg), ptr<float>(out), std::false_type{});
  else if (xg.scalar_type() == at::kFloat)
    run(ptr<const float>(xg), ptr<const bf16>(hg), ptr<bf16>(out), std::true_type{});
  else
    run(ptr<const bf16>(xg), ptr<const bf16>(hg), ptr<bf16>(out), std::true_type{});
  return out;
}

// w [out, in], bf16, contiguous: w packed once for x·wᵀ through `linear`, or None where torch
// lacks the packed oneDNN ops (or w is not bf16: in fp32 they did not pay). `batch` is the
// usual number of rows of x.
c10::optional<at::Tensor> pack_linear(const at::Tensor& w, int64_t batch) {
  check(w.dim() == 2 && w.is_contiguous() && w.device().is_cpu(), "pack_linear takes a contiguous CPU matrix");
  at::Tensor packed = pack_if_bf16(w, batch);
  return packed.defined() ? c10::optional<at::Tensor>(packed) : c10::nullopt;
}

// x·wᵀ for w packed by pack_linear; x [B, in] contiguous, in w's dtype.
at::Tensor linear(const at::Tensor& x, const at::Tensor& packed) {
  check(x.dim() == 2 && x.is_contiguous() && x.scalar_type() == packed.scalar_type(),
        "linear takes a contiguous [B, in] matrix in the packed weight's dtype");
  return packed_product(packed_linear_ops(), x, packed).contiguous();
}

// a [R, C] with unit column stride, 2- or 4-byte elements: a contiguous copy of aᵀ [C, R].
at::Tensor transpose(const at::Tensor& a) {
  check(a.dim() == 2 && a.stride(1) == 1 && a.device().is_cpu(), "transpose takes a CPU matrix with unit column stride");
  const int64_t R = a.size(0), C = a.size(1);
  at::Tensor out = at::empty({C, R}, a.options());
  if (a.element_size() == 2)
    transpose_into(ptr<const uint16_t>(a), a.stride(0), ptr<uint16_t>(out), R, R, C);
  else if (a.element_size() == 4)
    transpose_into(ptr<const uint32_t>(a), a.stride(0), ptr<uint32_t>(out), R, R, C);
  else
    out.copy_(a.t());
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "Forward time loop of one GRU layer (fp32 state)");
  m.def("gru_backward", &gru_backward, "Backward time loop of one GRU layer");
  m.def("transpose", &transpose, "A contiguous copy of a matrix's transpose");
  m.def("gru_cell", &gru_cell, "One GRU step for decoding: the gates and the new state in one pass");
  m.def("pack_linear", &pack_linear, "A bf16 weight packed once for linear, or None");
  m.def("linear", &linear, "x·wᵀ with a weight from pack_linear");
}
