//===- HostDevice.h - Functions both runtimes compile ----------*- C++ -*-===//
//
// BLPA_HOST_DEVICE marks the functions of lib/Runtime/Common that the CPU
// runtime compiles as plain C++ and the CUDA runtime as __host__ __device__.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_HOSTDEVICE_H
#define BLPA_RUNTIME_COMMON_HOSTDEVICE_H

#ifdef __CUDACC__
#define BLPA_HOST_DEVICE __host__ __device__
#else
#define BLPA_HOST_DEVICE
#endif

#endif // BLPA_RUNTIME_COMMON_HOSTDEVICE_H
