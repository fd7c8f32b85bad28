//===- Format.h - printf into a std::string for test messages -*- C++ -*-===//
//
// Shared by the kernel test harness (KernelHarness.h) and the CUDA
// emulation (CudaEmulation/Emulator.cpp), whose messages name values.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TEST_RUNTIME_FORMAT_H
#define BLPA_TEST_RUNTIME_FORMAT_H

#include <cstdarg>
#include <cstdio>
#include <string>

namespace blpa_test {

std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string format(const char *fmt, ...) {
  char buffer[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buffer, sizeof(buffer), fmt, args);
  va_end(args);
  return buffer;
}

} // namespace blpa_test

#endif // BLPA_TEST_RUNTIME_FORMAT_H
