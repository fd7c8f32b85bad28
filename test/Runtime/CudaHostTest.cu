//===- CudaHostTest.cu - The CUDA runtime's code math, on the host --------===//
//
// What of the CUDA runtime can be checked without a GPU: Packing.cuh's
// __host__ __device__ functions (normalization, BN-ReLU codes and their
// decoding, affine/nonneg/mask codes, the fast index division, the walk of
// the per-channel reductions) run on the host and are compared bit for bit
// with what the CPU runtime computes. The kernels that use them are checked
// on a GPU by blpa-cuda-kernel-test. Prints `N passed, M failed`.
//
//===----------------------------------------------------------------------===//
#include "Packing.cuh"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

using namespace blpa::cuda;

void blpa::cuda::failf(const char *format, ...) {
  va_list args;
  va_start(args, format);
  vfprintf(stderr, format, args);
  va_end(args);
  std::abort();
}

static int failures = 0;
#define EXPECT(cond, ...)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      if (failures++ < 30) {                                                   \
        printf("FAIL %s:%d: ", __FILE__, __LINE__);                            \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
      }                                                                        \
    }                                                                          \
  } while (0)

static bool same(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static void testDivider() {
  std::mt19937_64 rng(1);
  std::vector<uint64_t> ds = {1,
                              2,
                              3,
                              5,
                              7,
                              49,
                              64,
                              196,
                              3136,
                              12544,
                              1000003,
                              (1ull << 31) - 1,
                              1ull << 31,
                              (1ull << 32) + 1,
                              (1ull << 62) - 1,
                              1ull << 62,
                              (1ull << 62) + 1,
                              (1ull << 63) - 1};
  for (int r = 0; r < 200; ++r)
    ds.push_back(rng() >> (rng() % 63 + 1) | 1);
  for (int r = 0; r < 50; ++r)
    ds.push_back(rng() % 100000 + 1);
  for (uint64_t d : ds) {
    FastDivider div{int64_t(d)};
    std::vector<uint64_t> ns = {
        0,         1,    d - 1, d, d + 1, (1ull << 63) - 1, (1ull << 63) - 2,
        2 * d - 1, 2 * d};
    for (int r = 0; r < 2000; ++r)
      ns.push_back((rng() >> (rng() % 64)) & ((1ull << 63) - 1));
    for (uint64_t k = 1; k < 100 && k < (1ull << 63) / d; ++k) {
      ns.push_back(k * d - 1);
      ns.push_back(k * d);
    }
    for (uint64_t n : ns) {
      if (n >= (1ull << 63))
        continue;
      EXPECT(div.divide(n) == n / d, "div %llu / %llu", (unsigned long long)n,
             (unsigned long long)d);
    }
  }
  ChannelIndex index(7, 13);
  for (int64_t i = 0; i < 7 * 13 * 5; ++i)
    EXPECT(index(i) == (i / 13) % 7, "channel %lld", (long long)i);
}

static void testWalk(int64_t n, int64_t c, int64_t spatial) {
  ReducePlan plan = makeReducePlan("test", n, c, spatial);
  std::vector<int> seen(n * c * spatial, 0);
  for (int64_t ch = 0; ch < c; ++ch)
    for (unsigned part = 0; part < plan.parts; ++part)
      for (unsigned t = 0; t < reduceThreads; ++t)
        forPartElements(plan, ch, part, t, [&](int64_t idx) {
          EXPECT(idx >= 0 && idx < n * c * spatial, "range");
          if (idx >= 0 && idx < n * c * spatial) {
            EXPECT((idx / spatial) % c == ch, "channel of %lld",
                   (long long)idx);
            seen[idx]++;
          }
        });
  for (int64_t i = 0; i < n * c * spatial; ++i)
    EXPECT(seen[i] == 1, "walk %lld %lld %lld: element %lld seen %d",
           (long long)n, (long long)c, (long long)spatial, (long long)i,
           seen[i]);
  if (n * spatial > 0)
    EXPECT(plan.parts >= 1 && (plan.parts - 1) * plan.partLen < n * spatial,
           "empty part");
}

struct Shape {
  int64_t n, c, spatial;
};

static std::vector<float> randomData(std::mt19937 &rng, size_t count) {
  std::normal_distribution<float> normal(0.5f, 2.0f);
  std::vector<float> v(count);
  for (auto &x : v)
    x = normal(rng);
  return v;
}

template <int Bits> static void testBn(Shape s, std::mt19937 &rng) {
  int64_t numel = s.n * s.c * s.spatial;
  std::vector<float> x = randomData(rng, numel);
  std::vector<float> scale(s.c), bias(s.c);
  const float gammas[] = {1.0f, -0.7f, 0.0f, 1e-40f, 3.0f, -1e-3f, 0.25f};
  const float betas[] = {0.0f, 0.3f, -0.2f, 5.0f, -100.0f, 1e-5f, 0.75f};
  for (int64_t ch = 0; ch < s.c; ++ch) {
    scale[ch] = gammas[ch % 7];
    bias[ch] = betas[(ch / 2) % 7];
  }
  std::vector<float> y(numel), yr(numel), mean(s.c), invStd(s.c), mean2(s.c),
      invStd2(s.c);
  size_t bytes = (numel * Bits + 7) / 8;
  std::vector<uint8_t> codes(bytes, 0xAB), codes2(bytes, 0xCD);
  blpa_batch_norm_train_encode(nullptr, x.data(), scale.data(), bias.data(),
                               y.data(), mean.data(), invStd.data(),
                               codes.data(), s.n, s.c, s.spatial, 1e-5, Bits);
  blpa_batch_norm_relu_train_encode(
      nullptr, x.data(), scale.data(), bias.data(), yr.data(), mean2.data(),
      invStd2.data(), codes2.data(), s.n, s.c, s.spatial, 1e-5, Bits);
  EXPECT(codes == codes2, "relu codes differ");
  std::vector<BnCode> bn(s.c);
  for (int64_t ch = 0; ch < s.c; ++ch)
    bn[ch] = makeBnCode(scale[ch], bias[ch], Bits);
  std::vector<float> decoded(numel), decodedRelu(numel);
  blpa_bn_decode(nullptr, codes.data(), scale.data(), bias.data(),
                 decoded.data(), s.n, s.c, s.spatial, Bits, 0);
  blpa_bn_decode(nullptr, codes.data(), scale.data(), bias.data(),
                 decodedRelu.data(), s.n, s.c, s.spatial, Bits, 1);
  int nonTrivial = 0;
  for (int64_t i = 0; i < numel; ++i) {
    int64_t ch = (i / s.spatial) % s.c;
    NormParams p{mean[ch], normFactor(scale[ch], invStd[ch]), bias[ch]};
    float v = normalizeValue(x[i], p);
    EXPECT(same(v, y[i]), "y %lld: %g vs %g", (long long)i, v, y[i]);
    EXPECT(same(reluValue(v), yr[i]), "relu y %lld", (long long)i);
    uint32_t q = bnReluCode(bn[ch], x[i], v, mean[ch], invStd[ch]);
    uint32_t cpuQ = codeAt<Bits>(codes.data(), i);
    nonTrivial += q != 0 && q != (1u << Bits) - 1;
    EXPECT(q == cpuQ, "bits %d code %lld ch %lld: %u vs %u", Bits, (long long)i,
           (long long)ch, q, cpuQ);
    float d = bn[ch].y(cpuQ);
    EXPECT(same(d, decoded[i]), "decode %lld", (long long)i);
    EXPECT(same(d > 0 ? d : 0.0f, decodedRelu[i]), "decode relu %lld",
           (long long)i);
  }
  // Tail bits of the last byte are 0 on the CPU too.
  if (numel * Bits % 8)
    EXPECT((codes[bytes - 1] >> (numel * Bits % 8)) == 0, "tail");
  EXPECT(nonTrivial > 0 || numel < 8, "only clipped codes");
}

template <int Bits>
static void testQuantize(Shape s, std::mt19937 &rng, int scheme) {
  int64_t numel = s.n * s.c * s.spatial;
  std::vector<float> x = randomData(rng, numel);
  if (scheme == BLPA_SCHEME_NONNEG)
    for (auto &v : x)
      v = v > 0 ? v : 0.0f;
  // A constant channel and a NaN.
  if (s.c > 1)
    for (int64_t b = 0; b < s.n; ++b)
      for (int64_t j = 0; j < s.spatial; ++j)
        x[(b * s.c + 1) * s.spatial + j] = 2.0f;
  if (numel > 3)
    x[3] = NAN;
  size_t bytes = (numel * Bits + 7) / 8;
  std::vector<uint8_t> codes(bytes, 0xAB);
  std::vector<float> params(2 * s.c, -1.0f);
  blpa_quantize(nullptr, x.data(), codes.data(),
                scheme == BLPA_SCHEME_MASK ? nullptr : params.data(), s.n, s.c,
                s.spatial, Bits, scheme);
  std::vector<float> back(numel);
  blpa_dequantize(nullptr, codes.data(),
                  scheme == BLPA_SCHEME_MASK ? nullptr : params.data(),
                  back.data(), s.n, s.c, s.spatial, Bits, scheme);
  std::vector<ChannelStep> steps(s.c);
  if (scheme != BLPA_SCHEME_MASK)
    for (int64_t ch = 0; ch < s.c; ++ch) {
      float lo = INFINITY, hi = -INFINITY;
      for (int64_t b = 0; b < s.n; ++b)
        for (int64_t j = 0; j < s.spatial; ++j) {
          float v = x[(b * s.c + ch) * s.spatial + j];
          lo = v < lo ? v : lo;
          hi = hi < v ? v : hi;
        }
      if (scheme == BLPA_SCHEME_NONNEG)
        lo = 0;
      steps[ch] = makeChannelStep(lo, hi, (1 << Bits) - 1);
      EXPECT(same(steps[ch].lo, params[ch]), "lo %lld", (long long)ch);
      EXPECT(same(steps[ch].step, params[s.c + ch]), "step %lld",
             (long long)ch);
    }
  float maxCode = float((1 << Bits) - 1);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t ch = (i / s.spatial) % s.c;
    uint32_t q = scheme == BLPA_SCHEME_MASK ? maskCode(x[i])
                 : scheme == BLPA_SCHEME_AFFINE
                     ? affineCode(x[i], steps[ch], maxCode)
                     : nonnegCode(x[i], steps[ch], maxCode);
    uint32_t cpuQ = codeAt<Bits>(codes.data(), i);
    EXPECT(q == cpuQ, "scheme %d bits %d code %lld: %u vs %u", scheme, Bits,
           (long long)i, q, cpuQ);
    float v = scheme == BLPA_SCHEME_MASK ? maskValue(cpuQ)
              : scheme == BLPA_SCHEME_AFFINE
                  ? affineValue(cpuQ, params[ch], params[s.c + ch])
                  : nonnegValue(cpuQ, params[s.c + ch]);
    EXPECT(same(v, back[i]), "value %lld", (long long)i);
  }
  if (numel * Bits % 8)
    EXPECT((codes[bytes - 1] >> (numel * Bits % 8)) == 0, "tail");
}

static int passed = 0, groupsFailed = 0;

/// Runs one group of checks and counts it as one test.
template <typename F> static void group(const char *name, F &&checks) {
  int before = failures;
  checks();
  if (failures == before) {
    ++passed;
    return;
  }
  ++groupsFailed;
  printf("FAILED: %s (%d checks)\n", name, failures - before);
}

int main() {
  group("fast division", testDivider);
  const Shape walks[] = {
      {1, 1, 1},     {3, 1, 1},    {5, 3, 1},    {4, 2, 3},    {2, 3, 255},
      {2, 3, 256},   {3, 2, 257},  {7, 5, 1000}, {64, 1, 300}, {1000, 7, 1},
      {2, 5000, 1},  {300, 3, 17}, {0, 3, 5},    {3, 2, 0},    {16, 2, 3136},
      {1, 1, 70000}, {256, 4, 49}};
  for (Shape s : walks)
    group("reduction walk", [&] { testWalk(s.n, s.c, s.spatial); });
  std::mt19937 rng(7);
  const Shape shapes[] = {
      {3, 5, 7}, {2, 4, 1}, {4, 7, 33}, {1, 3, 3}, {5, 14, 9}};
  for (Shape s : shapes) {
    group("bn codes 2", [&] { testBn<2>(s, rng); });
    group("bn codes 4", [&] { testBn<4>(s, rng); });
    group("bn codes 8", [&] { testBn<8>(s, rng); });
    group("affine 2", [&] { testQuantize<2>(s, rng, BLPA_SCHEME_AFFINE); });
    group("affine 4", [&] { testQuantize<4>(s, rng, BLPA_SCHEME_AFFINE); });
    group("affine 8", [&] { testQuantize<8>(s, rng, BLPA_SCHEME_AFFINE); });
    group("nonneg 2", [&] { testQuantize<2>(s, rng, BLPA_SCHEME_NONNEG); });
    group("nonneg 4", [&] { testQuantize<4>(s, rng, BLPA_SCHEME_NONNEG); });
    group("nonneg 8", [&] { testQuantize<8>(s, rng, BLPA_SCHEME_NONNEG); });
    group("mask", [&] { testQuantize<1>(s, rng, BLPA_SCHEME_MASK); });
  }
  printf("%d passed, %d failed\n", passed, groupsFailed);
  return groupsFailed != 0;
}
