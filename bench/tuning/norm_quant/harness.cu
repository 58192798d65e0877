// Side-by-side timing and output comparison of two NormQuant header versions (tuning aid).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "flashinfer/norm/norm_quant.cuh"
#include "flashinfer/norm/norm_quant_old.cuh"

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e)); exit(1);} } while (0)

using bf16 = nv_bfloat16;
namespace nq = flashinfer::norm::quant;
namespace oq = flashinfer_old::norm::quant;

struct Op { const char* name; int norm; bool res; int qt; bool normed; };
// qt: 0 mx, 1 e4m3 static, 3 per-token
static const Op kOps[] = {
  {"rms->mxfp8", 0, false, 0, false},
  {"rms->mxfp8+normed", 0, false, 0, true},
  {"add+rms->mxfp8", 0, true, 0, false},
  {"add+rms->mxfp8+normed", 0, true, 0, true},
  {"rms->fp8", 0, false, 1, false},
  {"add+rms->fp8", 0, true, 1, false},
  {"rms->fp8 per-token", 0, false, 3, false},
  {"ln->fp8", 1, false, 1, false},
  {"ln->mxfp8", 1, false, 0, false},
  {"add+ln->fp8", 1, true, 1, false},
};

struct Set { bf16 *in, *res, *normed; uint8_t *out, *sf; float* ts; };

template <class P>
void fill(P& p, const Op& op, const Set& s, uint32_t T, uint32_t H, uint32_t Hp, void* w, float* beta, float* scale) {
  p.input = s.in; p.residual = op.res ? s.res : nullptr; p.weight = w; p.beta = op.norm ? beta : nullptr;
  p.normed_out = op.normed ? s.normed : nullptr; p.out = s.out; p.sf_out = s.sf; p.scale = scale;
  p.token_scale = s.ts; p.scale_ub = nullptr; p.num_tokens = T; p.d = H;
  p.padded_d = op.qt == 0 ? Hp : H; p.stride_input = H; p.stride_residual = H; p.stride_normed = H;
  p.stride_out = op.qt == 0 ? Hp : H; p.eps = 1e-5f; p.weight_bias = 0.f; p.sf_swizzled = true;
  p.num_sf_pad_rows = op.qt == 0 ? (T + 127) / 128 * 128 - T : 0;
}

struct Cfg { uint32_t vpt, rows; bool keep; };

template <uint32_t V, uint32_t R, bool K, nq::NormType N, bool RES>
cudaError_t launch_q(int qt, const nq::NormQuantParams& p, cudaStream_t st) {
  if constexpr (R > 1 && RES) { return cudaErrorInvalidValue; } else {
  if (qt == 0) return nq::LaunchNormQuant<bf16, V, R, K, N, RES, nq::QuantType::kMXFP8>(p, true, st);
  if (qt == 1) return nq::LaunchNormQuant<bf16, V, R, K, N, RES, nq::QuantType::kFP8E4M3>(p, true, st);
  return nq::LaunchNormQuant<bf16, V, R, K, N, RES, nq::QuantType::kFP8E4M3PerToken>(p, true, st); }
}
template <uint32_t V, uint32_t R, bool K>
cudaError_t launch_v(const Op& op, const nq::NormQuantParams& p, cudaStream_t st) {
  if (op.norm == 0) return op.res ? launch_q<V, R, K, nq::NormType::kRMSNorm, true>(op.qt, p, st) : launch_q<V, R, K, nq::NormType::kRMSNorm, false>(op.qt, p, st);
  return op.res ? launch_q<V, R, K, nq::NormType::kLayerNorm, true>(op.qt, p, st) : launch_q<V, R, K, nq::NormType::kLayerNorm, false>(op.qt, p, st);
}
static const Cfg kCfgs[] = {{1,1,false},{1,1,true},{2,1,true},{4,1,false},{4,1,true},{2,2,false},{2,2,true},{4,2,false},{4,2,true},{8,1,false},{8,1,true}};
cudaError_t launch_cfg(const Op& op, const Set& s, uint32_t T, uint32_t H, uint32_t Hp, void* w, float* beta, float* scale, const Cfg& c, cudaStream_t st) {
  nq::NormQuantParams p{}; fill(p, op, s, T, H, Hp, w, beta, scale);
#define C(V, R, K) if (c.vpt == V && c.rows == R && c.keep == K) return launch_v<V, R, K>(op, p, st);
  C(1,1,false) C(1,1,true) C(2,1,true) C(4,1,false) C(4,1,true) C(2,2,false) C(2,2,true) C(4,2,false) C(4,2,true) C(8,1,false) C(8,1,true)
#undef C
  return cudaErrorInvalidValue;
}

__global__ void copy_kernel(const uint4* __restrict__ a, uint4* __restrict__ b, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) b[i] = a[i];
}

template <bool NEW>
cudaError_t launch(const Op& op, const Set& s, uint32_t T, uint32_t H, uint32_t Hp, void* w, float* beta, float* scale, cudaStream_t st) {
  if constexpr (NEW) {
    nq::NormQuantParams p{}; fill(p, op, s, T, H, Hp, w, beta, scale);
    auto nt = static_cast<nq::NormType>(op.norm);
    if (op.qt == 0) return nq::DispatchNormQuant<bf16, nq::QuantType::kMXFP8>(nt, op.res, p, true, st);
    if (op.qt == 1) return nq::DispatchNormQuant<bf16, nq::QuantType::kFP8E4M3>(nt, op.res, p, true, st);
    return nq::DispatchNormQuant<bf16, nq::QuantType::kFP8E4M3PerToken>(nt, op.res, p, true, st);
  } else {
    oq::NormQuantParams p{}; fill(p, op, s, T, H, Hp, w, beta, scale);
    auto nt = static_cast<oq::NormType>(op.norm);
    if (op.qt == 0) return oq::DispatchNormQuant<bf16, oq::QuantType::kMXFP8>(nt, op.res, p, true, st);
    if (op.qt == 1) return oq::DispatchNormQuant<bf16, oq::QuantType::kFP8E4M3>(nt, op.res, p, true, st);
    return oq::DispatchNormQuant<bf16, oq::QuantType::kFP8E4M3PerToken>(nt, op.res, p, true, st);
  }
}

double graph_us(const std::function<void(int, cudaStream_t)>& call, int n_sets, int calls, cudaStream_t st) {
  for (int i = 0; i < n_sets; ++i) call(i, st);
  CK(cudaStreamSynchronize(st));
  cudaGraph_t g; cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < calls; ++i) call(i % n_sets, st);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 5; ++i) CK(cudaGraphLaunch(ge, st));
  cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  std::vector<float> ts;
  for (int r = 0; r < 25; ++r) {
    CK(cudaEventRecord(a, st)); CK(cudaGraphLaunch(ge, st)); CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b)); float ms; CK(cudaEventElapsedTime(&ms, a, b)); ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  CK(cudaGraphExecDestroy(ge)); CK(cudaGraphDestroy(g));
  return ts[ts.size() / 2] * 1e3 / calls;
}

int main(int argc, char** argv) {
  std::vector<uint32_t> Hs = {2880, 4096, 7168}, Ts = {1, 16, 4096, 8192, 32768};
  int only = argc > 1 ? atoi(argv[1]) : -1;
  cudaStream_t st; CK(cudaStreamCreate(&st));
  if (argc > 3) {  // profile mode: op H T -> 3 launches of the committed kernel
    const Op& op = kOps[only]; const uint32_t H = atoi(argv[2]), T = atoi(argv[3]);
    const uint32_t align = H % 128 ? 128 : 32, Hp = (H + align - 1) / align * align;
    const size_t E = size_t(T) * H, sf_bytes = size_t((T + 127) / 128 * 128) * ((Hp / 32 + 3) / 4 * 4);
    Set s; CK(cudaMalloc(&s.in, E * 2)); CK(cudaMalloc(&s.res, E * 2)); CK(cudaMalloc(&s.normed, E * 2));
    CK(cudaMalloc(&s.out, size_t(T) * Hp)); CK(cudaMalloc(&s.sf, sf_bytes)); CK(cudaMalloc(&s.ts, T * 4));
    CK(cudaMemset(s.in, 0x3c, E * 2)); CK(cudaMemset(s.res, 0x3c, E * 2));
    void* w; float *g, *sc; CK(cudaMalloc(&w, H * 4)); CK(cudaMalloc(&g, H * 4)); CK(cudaMalloc(&sc, 4));
    CK(cudaMemset(w, 0x3c, H * 4)); CK(cudaMemset(g, 0x3c, H * 4)); CK(cudaMemset(sc, 0x3c, 4));
    for (int i = 0; i < 3; ++i) CK(launch<false>(op, s, T, H, Hp, op.norm ? (void*)g : w, g, sc, st));
    CK(cudaStreamSynchronize(st));
    return 0;
  }
  cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, 0));
  const size_t L2 = prop.l2CacheSize;
  // copy ceiling: 1 GiB D2D
  { void *a, *b; size_t n = 1ull << 29; CK(cudaMalloc(&a, n)); CK(cudaMalloc(&b, n));
    double us = graph_us([&](int, cudaStream_t s) { copy_kernel<<<(n / 16 + 255) / 256, 256, 0, s>>>((const uint4*)a, (uint4*)b, n / 16); }, 1, 5, st);
    printf("{\"copy_ceiling_GBps\": %.1f}\n", 2.0 * n / us / 1e3); CK(cudaFree(a)); CK(cudaFree(b)); }
  std::mt19937 rng(1); std::normal_distribution<float> nd;
  for (uint32_t H : Hs) {
    const uint32_t align = H % 128 ? 128 : 32, Hp = (H + align - 1) / align * align;
    std::vector<bf16> hw(H); std::vector<float> hg(H);
    for (auto& x : hw) x = __float2bfloat16(nd(rng)); for (auto& x : hg) x = nd(rng);
    bf16* w; float *g, *b, *scale; CK(cudaMalloc(&w, H * 2)); CK(cudaMalloc(&g, H * 4)); CK(cudaMalloc(&b, H * 4)); CK(cudaMalloc(&scale, 4));
    CK(cudaMemcpy(w, hw.data(), H * 2, cudaMemcpyHostToDevice)); CK(cudaMemcpy(g, hg.data(), H * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b, hg.data(), H * 4, cudaMemcpyHostToDevice)); float sc = 0.5f; CK(cudaMemcpy(scale, &sc, 4, cudaMemcpyHostToDevice));
    for (uint32_t T : Ts) {
      const size_t E = size_t(T) * H, sf_bytes = size_t((T + 127) / 128 * 128) * ((Hp / 32 + 3) / 4 * 4);
      const size_t per_set = E * 8;
      const int n_sets = std::max<int>(1, std::min<int>(20, int((2 * L2 + per_set - 1) / per_set)));
      std::vector<Set> sets(n_sets);
      std::vector<bf16> hx(E);
      for (auto& x : hx) x = __float2bfloat16(nd(rng));
      for (auto& s : sets) {
        CK(cudaMalloc(&s.in, E * 2)); CK(cudaMalloc(&s.res, E * 2)); CK(cudaMalloc(&s.normed, E * 2));
        CK(cudaMalloc(&s.out, size_t(T) * Hp)); CK(cudaMalloc(&s.sf, sf_bytes)); CK(cudaMalloc(&s.ts, T * 4));
        CK(cudaMemcpy(s.in, hx.data(), E * 2, cudaMemcpyHostToDevice)); CK(cudaMemcpy(s.res, hx.data(), E * 2, cudaMemcpyHostToDevice));
      }
      for (int oi = 0; oi < int(sizeof(kOps) / sizeof(Op)); ++oi) {
        if (only >= 0 && oi != only) continue;
        const Op& op = kOps[oi];
        if (op.qt == 0 && H % 32) continue;
        size_t bytes = E * 2 + (op.res ? E * 4 : 0) + (op.normed ? E * 2 : 0);
        bytes += op.qt == 0 ? size_t(T) * Hp + sf_bytes : E + (op.qt == 3 ? T * 4 : 0);
        // correctness: old vs new on set 0 (fresh residual each)
        auto run_cmp = [&](auto tag, std::vector<uint8_t>& out, std::vector<uint8_t>& sf, std::vector<uint8_t>& aux) {
          constexpr bool NEW = decltype(tag)::value;
          CK(cudaMemcpy(sets[0].res, hx.data(), E * 2, cudaMemcpyHostToDevice));
          CK(cudaMemset(sets[0].out, 0xAB, size_t(T) * Hp)); CK(cudaMemset(sets[0].sf, 0xAB, sf_bytes));
          CK(cudaMemset(sets[0].normed, 0xAB, E * 2)); CK(cudaMemset(sets[0].ts, 0xAB, T * 4));
          CK(launch<NEW>(op, sets[0], T, H, Hp, op.norm ? (void*)g : (void*)w, b, scale, st));
          CK(cudaStreamSynchronize(st));
          const size_t ob = op.qt == 0 ? size_t(T) * Hp : E;
          out.resize(ob); CK(cudaMemcpy(out.data(), sets[0].out, ob, cudaMemcpyDeviceToHost));
          sf.resize(op.qt == 0 ? sf_bytes : (op.qt == 3 ? T * 4 : 0));
          if (op.qt == 0) CK(cudaMemcpy(sf.data(), sets[0].sf, sf_bytes, cudaMemcpyDeviceToHost));
          if (op.qt == 3) CK(cudaMemcpy(sf.data(), sets[0].ts, T * 4, cudaMemcpyDeviceToHost));
          aux.resize(E * 2 * 2);
          CK(cudaMemcpy(aux.data(), sets[0].normed, E * 2, cudaMemcpyDeviceToHost));
          CK(cudaMemcpy(aux.data() + E * 2, sets[0].res, E * 2, cudaMemcpyDeviceToHost));
        };
        std::vector<uint8_t> o1, s1, a1, o2, s2, a2;
        run_cmp(std::false_type{}, o1, s1, a1); run_cmp(std::true_type{}, o2, s2, a2);
        size_t dout = 0, dsf = 0, daux = 0;
        for (size_t i = 0; i < o1.size(); ++i) dout += o1[i] != o2[i];
        for (size_t i = 0; i < s1.size(); ++i) dsf += s1[i] != s2[i];
        for (size_t i = 0; i < a1.size(); ++i) daux += (op.normed || i >= E * 2) ? a1[i] != a2[i] : 0;
        auto mk = [&](auto tag) { return [&, tag](int i, cudaStream_t s) {
          constexpr bool NEW = decltype(tag)::value;
          CK(launch<NEW>(op, sets[i], T, H, Hp, op.norm ? (void*)g : (void*)w, b, scale, s)); }; };
        const double us_old = graph_us(mk(std::false_type{}), n_sets, 20, st);
        const double us_new = graph_us(mk(std::true_type{}), n_sets, 20, st);
        const uint32_t nvec = H / 8;
        std::vector<Cfg> cfgs;
        for (const Cfg& c : kCfgs) {
          if (c.rows > 1 && op.res) continue;
          if (T <= 16 && (c.vpt > 2 || c.rows > 1)) continue;
          if (T > 16 && c.vpt == 1) continue;
          const uint32_t nthr = (nvec + c.vpt - 1) / c.vpt;
          const uint32_t cap = c.vpt * c.rows >= 8 ? 256 : c.vpt * c.rows >= 4 ? 512 : 1024;
          if ((nthr + 31) / 32 * 32 > cap) continue;
          cfgs.push_back(c);
        }
        std::string sweep;
        for (const Cfg& c : cfgs) {
          // bit-exactness against the committed kernel at the same vectors per thread
          std::vector<uint8_t> o3(o1.size());
          CK(cudaMemcpy(sets[0].res, hx.data(), E * 2, cudaMemcpyHostToDevice));
          CK(cudaMemset(sets[0].out, 0xAB, size_t(T) * Hp));
          CK(launch_cfg(op, sets[0], T, H, Hp, op.norm ? (void*)g : (void*)w, b, scale, c, st));
          CK(cudaStreamSynchronize(st));
          CK(cudaMemcpy(o3.data(), sets[0].out, o3.size(), cudaMemcpyDeviceToHost));
          size_t dd = 0; for (size_t i = 0; i < o3.size(); ++i) dd += o3[i] != o2[i];
          const double us = graph_us([&](int i, cudaStream_t s) { CK(launch_cfg(op, sets[i], T, H, Hp, op.norm ? (void*)g : (void*)w, b, scale, c, s)); }, n_sets, 20, st);
          char buf[128]; snprintf(buf, sizeof buf, "%s[%u,%u,%d,%.3f,%zu]", sweep.empty() ? "" : ",", c.vpt, c.rows, int(c.keep), us, dd); sweep += buf;
        }
        // copy of the same bytes: read bytes/2, write bytes/2, rotating over the sets' buffers
        const size_t half = (bytes / 2 + 15) / 16 * 16;
        std::vector<void*> cs(n_sets), cd(n_sets);
        for (int i = 0; i < n_sets; ++i) { CK(cudaMalloc(&cs[i], half)); CK(cudaMalloc(&cd[i], half)); }
        const double us_copy = graph_us([&](int i, cudaStream_t s) { copy_kernel<<<(half / 16 + 255) / 256, 256, 0, s>>>((const uint4*)cs[i], (uint4*)cd[i], half / 16); }, n_sets, 20, st);
        for (int i = 0; i < n_sets; ++i) { CK(cudaFree(cs[i])); CK(cudaFree(cd[i])); }
        printf("{\"H\": %u, \"T\": %u, \"op\": \"%s\", \"bytes\": %zu, \"old_us\": %.3f, \"new_us\": %.3f, \"copy_us\": %.3f, "
               "\"new_pct_of_copy\": %.1f, \"old_pct_of_copy\": %.1f, \"diff_out\": %zu, \"diff_sf\": %zu, \"diff_aux\": %zu, \"n_out\": %zu, \"sweep\": [%s]}\n",
               H, T, op.name, bytes, us_old, us_new, us_copy, 100 * us_copy / us_new, 100 * us_copy / us_old, dout, dsf, daux, o1.size(), sweep.c_str());
        fflush(stdout);
      }
      for (auto& s : sets) { cudaFree(s.in); cudaFree(s.res); cudaFree(s.normed); cudaFree(s.out); cudaFree(s.sf); cudaFree(s.ts); }
    }
  }
  return 0;
}
