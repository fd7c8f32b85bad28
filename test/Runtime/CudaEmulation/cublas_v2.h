//===- cublas_v2.h - What CudaRuntime.h names of cuBLAS ---------*- C++ -*-===//
//
// blpa-cuda-emulation-test compiles the real CudaRuntime.h, which declares
// a cuBLAS handle and status; the emulated kernels use neither.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_CUDA_EMULATION_CUBLAS_V2_H
#define BLPA_CUDA_EMULATION_CUBLAS_V2_H

typedef struct cublasContext *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;

#endif // BLPA_CUDA_EMULATION_CUBLAS_V2_H
