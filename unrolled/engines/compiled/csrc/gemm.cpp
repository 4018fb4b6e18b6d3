// The per-step GEMM of the compiled Elman, LSTM and GRU loops (MUT's, on column blocks of one
// weight, stay with ATen), through whichever of four kernels is fastest for the shape on this
// machine, measured once per shape:
//   aten    ATen's GEMM (MKL on x86);
//   onednn  oneDNN's matmul primitive, the library torch's own fused RNN kernel runs on;
//   packed  oneDNN's inner product on a copy of the weights packed once per loop into its
//           blocked layout (what torch's RNN kernel does), saving the packing at every step;
//   mkl-packed  MKL's GEMM on the weights packed once per loop by cblas_sgemm_pack (the API MKL
//           offers for this very case), writing (or adding) into the output in place: ATen's
//           GEMM repacks the weights at every call, and oneDNN's returns a new tensor to add;
//   rows    the plain loops below, for a few rows (batch 1 to kSmallRows).
//
// Why several: a time loop's GEMM is small in one dimension (the batch) and reuses one weight
// matrix at every step. On the AMD CPU this project measures on, MKL runs its AVX2 kernel and
// oneDNN its AVX-512 one: oneDNN is 20-30% faster once the weights pass about a megabyte, packed
// 10-40% faster again, and both 1.5-3x slower for small ones (they cost about 15 us a call). At
// batch 1 the product is a matrix-vector one, bound by reading the weights from cache, where
// both libraries spend more in their set-up than in the arithmetic. Which one wins is a property
// of the CPU and the libraries, so it is measured on the shapes the loops run rather than
// guessed: the first loop of a shape times each candidate on scratch operands of its shapes
// (the packing's cost spread over the loop's steps) and keeps the fastest; a challenger must
// beat ATen by 5% to be chosen. The kernels differ in float32's last bits, so the choice is
// kept for every process of the machine (ChoiceFile): they all compute alike, and a resumed
// run matches an unbroken one bit for bit.
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "common.h"

namespace at::native {
// Exported by libtorch_cpu (aten/src/ATen/native/mkldnn/Matmul.h, not among the installed
// headers): result = beta result + alpha mat1 mat2 through oneDNN's matmul primitive.
TORCH_API void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta,
                             float alpha);
}  // namespace at::native

// MKL's packed GEMM (mkl_cblas.h; LP64 ints, the interface torch links), declared weak: where
// torch carries no MKL (not x86) they stay null and the mkl-packed kernel is never a candidate.
extern "C" {
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
}

namespace unrolled {

namespace {

// m, k, n, a^T, b^T, +=, threads, a loop of many steps (the packing's cost spread thin)
using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, int, bool>;
constexpr int64_t kManySteps = 16;

std::mutex g_mutex;
std::mutex g_measuring;  // one measurement at a time (they would slow each other down)
GemmBackend g_mode = GemmBackend::kAuto;
std::map<Key, GemmBackend> g_choice;  // shape -> the kernel measured fastest
std::string g_onednn_error;           // set once oneDNN has failed (e.g. a CPU without AVX-512): never again
std::string g_packed_error;           // the same for the packed kernel (torch built without its ops)
std::string g_choice_path;            // where this machine's processes share their choices (ChoiceFile)

// Below this many multiply-adds a call's fixed cost decides: ATen's GEMM, unmeasured.
constexpr int64_t kMinWork = int64_t(1) << 12;
// The rows kernel is a candidate up to this many rows.
constexpr int64_t kSmallRows = 8;
// Work per task when the rows kernel splits the columns between threads.
constexpr int64_t kTaskWork = int64_t(1) << 15;

// Row-major (contiguous) or its transpose.
bool plain(const Tensor& t) { return t.is_contiguous() || (t.stride(0) == 1 && t.stride(1) == t.size(0)); }

// float32 on the CPU, 2-D, in layouts oneDNN and the rows kernel take as they are.
bool eligible(const Tensor& out, const Tensor& a, const Tensor& b) {
  return a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat &&
         a.device().is_cpu() && a.dim() == 2 && b.dim() == 2 && out.is_contiguous() && plain(a) && plain(b);
}

bool onednn_enabled() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_onednn_error.empty() && at::globalContext().userEnabledMkldnn();
}

bool packed_enabled() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_packed_error.empty() && at::globalContext().userEnabledMkldnn();
}

void remember(std::string* error, const c10::Error& e) {
  std::lock_guard<std::mutex> lock(g_mutex);
  *error = e.what_without_backtrace();
}

// b (k, n) as the weight (n, k) of oneDNN's inner product, packed for `rows` rows (torch's
// mkldnn::_reorder_linear_weight); undefined if it refuses.
Tensor pack(const Tensor& b, int64_t rows) {
  try {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                         .typed<Tensor(const Tensor&, std::optional<int64_t>)>();
    return op.call(b.is_contiguous() ? b.t().contiguous() : b.t(), rows);
  } catch (const c10::Error& e) {
    remember(&g_packed_error, e);
    return Tensor();
  }
}

// out (+)= a w^T with w packed by pack() (torch's mkldnn::_linear_pointwise); false if it refuses.
bool packed_gemm(const Tensor& out, const Tensor& a, const Tensor& packed, bool accumulate) {
  try {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                         .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, c10::string_view,
                                       c10::List<std::optional<c10::Scalar>>, std::optional<c10::string_view>)>();
    const Tensor y = op.call(a.contiguous(), packed, std::nullopt, "none", c10::List<std::optional<c10::Scalar>>(),
                             std::nullopt);
    Tensor o = out;
    if (accumulate) {
      o.add_(y);
    } else {
      o.copy_(y);
    }
    return true;
  } catch (const c10::Error& e) {
    remember(&g_packed_error, e);
    return false;
  }
}

// CBLAS's constants: row-major layout, no transpose / transpose / packed, the B operand.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPackedOperand = 151, kBMatrix = 162;

bool mkl_packed_available() {
  return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr && cblas_sgemm_compute != nullptr &&
         at::globalContext().userEnabledMkldnn();
}

// Sizes MKL's 32-bit interface takes.
bool fits_int(int64_t v) { return v > 0 && v <= int64_t(1) << 30; }

// b (k, n), row-major or the transpose of a row-major (n, k), packed by MKL for products with
// `rows` rows; undefined if MKL is absent or the sizes do not fit.
Tensor mkl_pack(const Tensor& b, int64_t rows) {
  const int64_t K = b.size(0), N = b.size(1);
  if (!mkl_packed_available() || !fits_int(rows) || !fits_int(K) || !fits_int(N)) return Tensor();
  const bool trans = !b.is_contiguous();  // plain(b): then b = w^T with w (n, k) row-major
  const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, int(rows), int(N), int(K));
  Tensor dest = at::empty({int64_t(bytes / sizeof(float)) + 16}, b.options());
  cblas_sgemm_pack(kRowMajor, kBMatrix, trans ? kTrans : kNoTrans, int(rows), int(N), int(K), 1.0f,
                   b.data_ptr<float>(), trans ? int(K) : int(N), dest.data_ptr<float>());
  return dest;
}

// out (+)= a b with b packed by mkl_pack for a.size(0) rows; false where a's layout does not suit.
bool mkl_packed_gemm(const Tensor& out, const Tensor& a, const Tensor& packed, int64_t n, bool accumulate) {
  if (!a.is_contiguous() || !packed.defined()) return false;
  const int64_t M = a.size(0), K = a.size(1);
  cblas_sgemm_compute(kRowMajor, kNoTrans, kPackedOperand, int(M), int(n), int(K), a.data_ptr<float>(), int(K),
                      packed.data_ptr<float>(), int(n), accumulate ? 1.0f : 0.0f, out.data_ptr<float>(), int(n));
  return true;
}

void aten_gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  Tensor o = out;  // a handle: the _out functions take a non-const reference
  if (accumulate) {
    o.addmm_(a, b);
  } else {
    at::mm_out(o, a, b);
  }
}

// oneDNN's matmul; false (and remembered, so never tried again) if it refuses.
bool onednn_gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  try {
    at::native::mkldnn_matmul(a, b, out, accumulate ? 1.0f : 0.0f, 1.0f);
    return true;
  } catch (const c10::Error& e) {
    remember(&g_onednn_error, e);
    return false;
  }
}

// Eight floats as one value (GCC/Clang vector extension): an AVX register where the build has
// AVX2, two SSE ones otherwise. The compiler does not vectorise the dot products below by itself.
typedef float Float8 __attribute__((vector_size(32)));

inline Float8 load8(const float* p) {
  Float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float sum8(Float8 v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

// out[m, n] (+)= sum_k a[m, k] w[n, k] (b = w^T, w row-major): four rows of w against each row
// of a at a time, each dot product in its own vector register.
void rows_dot(const float* a, const float* w, float* out, int64_t M, int64_t K, int64_t N, bool accumulate) {
  const int64_t grain = std::max<int64_t>(4, kTaskWork / std::max<int64_t>(M * K, 1));
  at::parallel_for(0, (N + 3) / 4, (grain + 3) / 4, [&](int64_t q0, int64_t q1) {
    for (int64_t n = q0 * 4; n < std::min(N, q1 * 4); n += 4) {
      const int64_t width = std::min<int64_t>(4, N - n);
      const float* w0 = w + n * K;
      const float* w1 = width > 1 ? w0 + K : w0;
      const float* w2 = width > 2 ? w0 + 2 * K : w0;
      const float* w3 = width > 3 ? w0 + 3 * K : w0;
      for (int64_t m = 0; m < M; ++m) {
        const float* x = a + m * K;
        Float8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) {
          const Float8 xv = load8(x + k);
          s0 += xv * load8(w0 + k);
          s1 += xv * load8(w1 + k);
          s2 += xv * load8(w2 + k);
          s3 += xv * load8(w3 + k);
        }
        float d[4] = {sum8(s0), sum8(s1), sum8(s2), sum8(s3)};
        for (; k < K; ++k) d[0] += x[k] * w0[k], d[1] += x[k] * w1[k], d[2] += x[k] * w2[k], d[3] += x[k] * w3[k];
        float* o = out + m * N + n;
        for (int64_t j = 0; j < width; ++j) o[j] = accumulate ? o[j] + d[j] : d[j];
      }
    }
  });
}

// out[m, :] (+)= sum_k a[m, k] b[k, :] (b row-major): for each block of columns, the rows of b
// four at a time added into each row of out, which stays in the first-level cache.
void rows_axpy(const float* a, int64_t a_row, int64_t a_col, const float* b, float* out, int64_t M, int64_t K,
               int64_t N, bool accumulate) {
  const int64_t grain = std::max<int64_t>(64, kTaskWork / std::max<int64_t>(M * K, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    const int64_t width = n1 - n0;
    for (int64_t m = 0; m < M; ++m) {
      float* o = out + m * N + n0;
      if (!accumulate) std::fill(o, o + width, 0.0f);
      const float* x = a + m * a_row;
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const float x0 = x[k * a_col], x1 = x[(k + 1) * a_col], x2 = x[(k + 2) * a_col], x3 = x[(k + 3) * a_col];
        const float* b0 = b + k * N + n0;
        const float* b1 = b0 + N;
        const float* b2 = b1 + N;
        const float* b3 = b2 + N;
        for (int64_t j = 0; j < width; ++j) o[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j];
      }
      for (; k < K; ++k) {
        const float xk = x[k * a_col];
        const float* bk = b + k * N + n0;
        for (int64_t j = 0; j < width; ++j) o[j] += xk * bk[j];
      }
    }
  });
}

void rows_gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const float* a_p = a.data_ptr<float>();
  float* o_p = out.data_ptr<float>();
  if (!b.is_contiguous() && a.is_contiguous()) {  // b = w^T: dot products with w's rows
    rows_dot(a_p, b.data_ptr<float>(), o_p, M, K, N, accumulate);
  } else {
    const Tensor bc = b.is_contiguous() ? b : b.contiguous();
    rows_axpy(a_p, a.stride(0), a.stride(1), bc.data_ptr<float>(), o_p, M, K, N, accumulate);
  }
}

// One product by `kernel`; packed needs b's packed copy (made here if not given). False if
// oneDNN refused.
bool run(GemmBackend kernel, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& packed,
         bool accumulate) {
  switch (kernel) {
    case GemmBackend::kOneDnn:
      return onednn_gemm(out, a, b, accumulate);
    case GemmBackend::kPacked: {
      const Tensor p = packed.defined() ? packed : pack(b, a.size(0));
      return p.defined() && packed_gemm(out, a, p, accumulate);
    }
    case GemmBackend::kMklPacked: {
      const Tensor p = packed.defined() ? packed : mkl_pack(b, a.size(0));
      return mkl_packed_gemm(out, a, p, b.size(1), accumulate);
    }
    case GemmBackend::kRows:
      rows_gemm(out, a, b, accumulate);
      return true;
    default:
      aten_gemm(out, a, b, accumulate);
      return true;
  }
}

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The fastest kernel for a product of these shapes in a loop of `steps` steps, timed on scratch
// operands: each candidate once to warm up (oneDNN builds its kernel on the first call), then
// the best of five rounds, each round as many calls as make about 2^25 multiply-adds (a
// fraction of a millisecond: one call of a small product is too short to time against the
// threads' wake-up); the packed kernel's packing counts once per loop.
GemmBackend measure(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate, int64_t steps) {
  std::vector<GemmBackend> candidates{GemmBackend::kAten};
  if (onednn_enabled()) candidates.push_back(GemmBackend::kOneDnn);
  if (packed_enabled()) candidates.push_back(GemmBackend::kPacked);
  if (mkl_packed_available() && a.is_contiguous()) candidates.push_back(GemmBackend::kMklPacked);
  if (a.size(0) <= kSmallRows) candidates.push_back(GemmBackend::kRows);
  // constant operands: the values do not change the time, and drawing them would move the
  // caller's random state (dropout masks, sampling) by a measurement that only the first loop of
  // a shape makes
  auto like = [](const Tensor& t) {  // same shape and layout
    return (t.is_contiguous() ? at::empty_like(t) : at::empty({t.size(1), t.size(0)}, t.options()).t()).fill_(0.5);
  };
  const Tensor x = like(a), w = like(b);
  Tensor scratch = at::zeros_like(out);
  std::vector<Tensor> packed(candidates.size());  // each packing kernel's copy of w
  std::vector<double> pack_cost(candidates.size(), 0.0);
  std::vector<double> best(candidates.size(), 1e30);
  for (size_t i = 0; i < candidates.size(); ++i) {
    const bool packs = candidates[i] == GemmBackend::kPacked || candidates[i] == GemmBackend::kMklPacked;
    if (packs) {
      const auto start = std::chrono::steady_clock::now();
      packed[i] = candidates[i] == GemmBackend::kPacked ? pack(w, a.size(0)) : mkl_pack(w, a.size(0));
      pack_cost[i] = since(start);
      if (!packed[i].defined()) best[i] = 2e30;
    }
    if (best[i] < 1.5e30 && !run(candidates[i], scratch, x, w, packed[i], accumulate)) best[i] = 2e30;  // refused
  }
  const int64_t work = a.size(0) * a.size(1) * b.size(1);
  const int64_t calls = std::clamp<int64_t>((int64_t(1) << 25) / work, 1, 1024);
  for (int round = 0; round < 5; ++round) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (best[i] > 1.5e30) continue;
      const auto start = std::chrono::steady_clock::now();
      for (int64_t c = 0; c < calls; ++c) run(candidates[i], scratch, x, w, packed[i], accumulate);
      best[i] = std::min(best[i], since(start));
    }
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    best[i] += pack_cost[i] * double(calls) / double(std::max<int64_t>(steps, 1));
  }
  size_t pick = 0;
  for (size_t i = 1; i < candidates.size(); ++i) {
    if (best[i] < 0.95 * best[0] && best[i] < best[pick]) pick = i;
  }
  return candidates[pick];
}

// The choices measured on this machine, shared by its processes: one line per shape (the key's
// fields, then the kernel), in a file next to the compiled module. Opening it takes an exclusive
// lock (flock) and merges its lines into g_choice; appending adds one; closing unlocks. Without
// a path (or where the file cannot be opened) the choices stay in the process.
class ChoiceFile {
 public:
  explicit ChoiceFile(const std::string& path) {
    if (path.empty()) return;
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return;
    if (::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    std::ifstream in(path);
    std::string line;
    std::lock_guard<std::mutex> lock(g_mutex);
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      int64_t m, k, n, a_t, b_t, acc, threads, many, kernel;
      if (!(fields >> m >> k >> n >> a_t >> b_t >> acc >> threads >> many >> kernel)) continue;
      if (kernel < 1 || kernel > 5) continue;
      g_choice.emplace(Key{m, k, n, a_t != 0, b_t != 0, acc != 0, static_cast<int>(threads), many != 0},
                       static_cast<GemmBackend>(kernel));
    }
  }
  ChoiceFile(const ChoiceFile&) = delete;
  ChoiceFile& operator=(const ChoiceFile&) = delete;
  ~ChoiceFile() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  void append(const Key& key, GemmBackend kernel) const {
    if (fd_ < 0) return;
    const auto& [m, k, n, a_t, b_t, acc, threads, many] = key;
    std::ostringstream line;
    line << m << ' ' << k << ' ' << n << ' ' << a_t << ' ' << b_t << ' ' << acc << ' ' << threads << ' ' << many
         << ' ' << static_cast<int64_t>(kernel) << '\n';
    const std::string text = line.str();
    if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return;  // kept in memory
  }

 private:
  int fd_ = -1;
};

// The kernel for out (+)= a b in a loop of `steps` steps: the forced one, or the one measured
// fastest for the shapes (measured now if new); ATen's outside float32 and small products.
GemmBackend choose(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate, int64_t steps) {
  if (!eligible(out, a, b)) return GemmBackend::kAten;
  GemmBackend mode;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    mode = g_mode;
  }
  if (mode != GemmBackend::kAuto) return mode;
  if (a.size(0) * a.size(1) * b.size(1) < kMinWork) return GemmBackend::kAten;
  const Key key{a.size(0), a.size(1), b.size(1), !a.is_contiguous(), !b.is_contiguous(), accumulate,
                at::get_num_threads(), steps >= kManySteps};
  auto known = [&key]() -> std::optional<GemmBackend> {
    std::lock_guard<std::mutex> lock(g_mutex);
    const auto found = g_choice.find(key);
    return found == g_choice.end() ? std::nullopt : std::optional<GemmBackend>(found->second);
  };
  if (const auto kernel = known()) return *kernel;
  // New to this process: another process on this machine may have measured it (the file), else
  // measure it here, holding the file's lock, so that every process agrees.
  std::lock_guard<std::mutex> one_at_a_time(g_measuring);
  std::string path;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    path = g_choice_path;
  }
  const ChoiceFile file(path);
  if (const auto kernel = known()) return *kernel;
  const GemmBackend fastest = measure(out, a, b, accumulate, steps);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_choice.emplace(key, fastest);
  }
  file.append(key, fastest);
  return fastest;
}

}  // namespace

StepGemm::StepGemm(const Tensor& b, int64_t rows, bool accumulate, int64_t steps)
    : b_(b), rows_(rows), accumulate_(accumulate) {
  const Tensor a = at::empty({rows, b.size(0)}, b.options()), out = at::empty({rows, b.size(1)}, b.options());
  kernel_ = choose(out, a, b, accumulate, steps);
  if (kernel_ == GemmBackend::kPacked) {
    packed_ = packed_enabled() ? pack(b, rows) : Tensor();
    if (!packed_.defined()) kernel_ = GemmBackend::kOneDnn;
  }
  if (kernel_ == GemmBackend::kMklPacked) {
    packed_ = eligible(out, a, b) ? mkl_pack(b, rows) : Tensor();
    if (!packed_.defined()) kernel_ = GemmBackend::kAten;
  }
  if (kernel_ == GemmBackend::kOneDnn && !onednn_enabled()) kernel_ = GemmBackend::kAten;
  // ATen's GEMM on a transposed (or sliced) weight: a row-major copy, made once for a long loop
  // past the rows kernel's batches, runs 15-25% faster (64 us a step against 80 at (32, 256) x
  // (256, 1024) on the CPU measured here) for about one step's cost. The choice stays the one
  // measured on the given layout, so the machine's choice file holds as it was.
  if (kernel_ == GemmBackend::kAten && rows > kSmallRows && steps >= kManySteps && !b.is_contiguous() &&
      b.scalar_type() == at::kFloat) {
    b_ = b.contiguous();
  }
}

void StepGemm::apply(const Tensor& out, const Tensor& a, bool accumulate) const {
  GemmBackend kernel = eligible(out, a, b_) ? kernel_ : GemmBackend::kAten;  // a view of other strides
  if (kernel == GemmBackend::kMklPacked && a.size(0) != rows_) kernel = GemmBackend::kAten;
  if (!run(kernel, out, a, b_, packed_, accumulate)) aten_gemm(out, a, b_, accumulate);
}

void StepGemm::operator()(const Tensor& out, const Tensor& a) const { apply(out, a, accumulate_); }

void StepGemm::with_bias(const Tensor& out, const OptTensor& bias, const Tensor& a) const {
  if (!bias.has_value()) return apply(out, a, accumulate_);
  Tensor o = out;
  o.copy_(bias->expand_as(out));
  apply(out, a, true);
}

void gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  StepGemm(b, a.size(0), accumulate, 1)(out, a);
}

void set_gemm_choice_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_choice_path = path;
}

int64_t set_gemm_backend(int64_t mode) {
  TORCH_CHECK(mode >= 0 && mode <= 5,
              "gemm backend: 0 (auto), 1 (aten), 2 (onednn), 3 (rows), 4 (packed) or 5 (mkl-packed) expected, got ",
              mode);
  std::lock_guard<std::mutex> lock(g_mutex);
  const auto previous = static_cast<int64_t>(g_mode);
  g_mode = static_cast<GemmBackend>(mode);
  return previous;
}

std::vector<std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, int64_t, bool, int64_t>> gemm_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, int64_t, bool, int64_t>> rows;
  for (const auto& [key, kernel] : g_choice) {
    const auto& [m, k, n, a_t, b_t, acc, threads, many] = key;
    rows.emplace_back(m, k, n, a_t, b_t, acc, threads, many, static_cast<int64_t>(kernel));
  }
  return rows;
}

std::string onednn_error() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_onednn_error.empty() ? g_packed_error : g_onednn_error;
}

}  // namespace unrolled
