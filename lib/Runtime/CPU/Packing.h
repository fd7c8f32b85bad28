//===- Packing.h - Packed K-bit activation codes --------------------------===//
//
// The one layout of the packed codes every encode/decode kernel reads and
// writes: element i of a row-major tensor holds a `Bits`-bit unsigned code
// (Bits in {1, 2, 4, 8}) in byte (i * Bits) / 8 at bit offset (i * Bits) % 8,
// least significant bits first. A tensor of numel codes takes
// ceil(numel * Bits / 8) bytes and the unused tail bits are 0.
//
// Kernels never compute a code straight into its byte: they compute a chunk
// of codes into a byte-per-code buffer with a plain (vectorizable) loop and
// pack or unpack whole chunks. Writers split the elements at multiples of 8,
// where codes start on a byte boundary for every width, so no two threads
// ever write the same byte.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CPU_PACKING_H
#define BLPA_RUNTIME_CPU_PACKING_H

#include "CpuRuntime.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace blpa {
namespace cpu {

/// Codes computed or decoded per step of the encode/decode loops: a multiple
/// of 8 (so chunks start on byte boundaries) whose byte-per-code buffer sits
/// comfortably on the stack and in L1.
constexpr int64_t codeChunk = 1024;
static_assert(elementBlock % 8 == 0 && codeChunk % 8 == 0,
              "code writers must split at byte boundaries");

/// The code of element i.
template <int Bits> inline uint8_t codeAt(const uint8_t *packed, int64_t i) {
  constexpr int perByte = 8 / Bits;
  return uint8_t(packed[i / perByte] >> (i % perByte * Bits) &
                 ((1 << Bits) - 1));
}

/// Packs q[0, count) into out, which starts on a byte boundary. The last
/// byte's unused bits are written as 0.
template <int Bits>
inline void packCodes(const uint8_t *q, int64_t count, uint8_t *out) {
  constexpr int perByte = 8 / Bits;
  int64_t full = count / perByte;
  for (int64_t b = 0; b < full; ++b) {
    unsigned byte = 0;
    for (int l = 0; l < perByte; ++l)
      byte |= unsigned(q[b * perByte + l]) << (l * Bits);
    out[b] = uint8_t(byte);
  }
  if (int64_t rest = count - full * perByte) {
    unsigned byte = 0;
    for (int l = 0; l < rest; ++l)
      byte |= unsigned(q[full * perByte + l]) << (l * Bits);
    out[full] = uint8_t(byte);
  }
}

/// q[0, count) = the codes of elements [first, first + count); `first` may
/// start anywhere inside a byte.
template <int Bits>
inline void unpackCodes(const uint8_t *packed, int64_t first, int64_t count,
                        uint8_t *q) {
  constexpr int perByte = 8 / Bits;
  constexpr unsigned mask = (1u << Bits) - 1;
  // Codes up to the next byte boundary, then whole bytes, then the tail.
  int64_t head = std::min(count, (perByte - first % perByte) % perByte);
  for (int64_t j = 0; j < head; ++j)
    q[j] = codeAt<Bits>(packed, first + j);
  const uint8_t *in = packed + (first + head) / perByte;
  uint8_t *dst = q + head;
  int64_t full = (count - head) / perByte;
  for (int64_t b = 0; b < full; ++b)
    for (int l = 0; l < perByte; ++l)
      dst[b * perByte + l] = uint8_t(in[b] >> (l * Bits) & mask);
  for (int64_t j = head + full * perByte; j < count; ++j)
    q[j] = codeAt<Bits>(packed, first + j);
}

/// Calls body(slice, begin, end) for each maximal run [begin, end) of
/// [from, to) that lies in one slice of `sliceLen` elements (slice =
/// begin / sliceLen), in order.
template <typename Body>
void forEachSliceRun(int64_t from, int64_t to, int64_t sliceLen, Body &&body) {
  while (from < to) {
    int64_t slice = from / sliceLen;
    int64_t end = std::min(to, (slice + 1) * sliceLen);
    body(slice, from, end);
    from = end;
  }
}

/// Writes the packed codes of elements [0, numel), viewed as slices of
/// `sliceLen` elements, in parallel blocks. codes(slice, begin, end, q)
/// stores the codes of elements [begin, end), all in `slice`, to
/// q[0, end - begin); it may also write other per-element outputs of the
/// same elements (the blocks are disjoint).
template <int Bits, typename Codes>
void encodeSlices(int64_t numel, int64_t sliceLen, uint8_t *packed,
                  Codes &&codes) {
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    uint8_t q[codeChunk];
    for (int64_t at = begin; at < end; at += codeChunk) {
      int64_t stop = std::min(end, at + codeChunk);
      forEachSliceRun(at, stop, sliceLen, [&](int64_t s, int64_t b, int64_t e) {
        codes(s, b, e, q + (b - at));
      });
      packCodes<Bits>(q, stop - at, packed + at / 8 * Bits);
    }
  });
}

/// The reverse of encodeSlices: values(slice, begin, end, q) gets the codes
/// of elements [begin, end), all in `slice`, in q[0, end - begin).
template <int Bits, typename Values>
void decodeSlices(int64_t numel, int64_t sliceLen, const uint8_t *packed,
                  Values &&values) {
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    uint8_t q[codeChunk];
    for (int64_t at = begin; at < end; at += codeChunk) {
      int64_t stop = std::min(end, at + codeChunk);
      unpackCodes<Bits>(packed, at, stop - at, q);
      forEachSliceRun(at, stop, sliceLen, [&](int64_t s, int64_t b, int64_t e) {
        values(s, b, e, q + (b - at));
      });
    }
  });
}

/// Calls f(std::integral_constant<int, bits>()) so that the code width is a
/// compile-time constant in the loops; fails for a width `allowed` (a bit set
/// of widths, e.g. 1 << 4) does not contain.
template <typename F>
void withCodeBits(const char *kernel, int64_t bits, unsigned allowed, F &&f) {
  if (bits < 1 || bits > 8 || !(allowed >> bits & 1))
    failf("%s: unsupported code width %lld", kernel, (long long)bits);
  switch (bits) {
  case 1:
    return f(std::integral_constant<int, 1>());
  case 2:
    return f(std::integral_constant<int, 2>());
  case 4:
    return f(std::integral_constant<int, 4>());
  default:
    return f(std::integral_constant<int, 8>());
  }
}

/// The widths of codes that approximate values (all but the 1-bit masks),
/// for withCodeBits.
constexpr unsigned valueCodeBits = 1 << 2 | 1 << 4 | 1 << 8;

} // namespace cpu
} // namespace blpa

#endif // BLPA_RUNTIME_CPU_PACKING_H
