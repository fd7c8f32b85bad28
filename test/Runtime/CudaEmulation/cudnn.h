//===- cudnn.h - What CudaRuntime.h names of cuDNN --------------*- C++ -*-===//
//
// blpa-cuda-emulation-test compiles the real CudaRuntime.h, which declares
// a cuDNN handle and status; the emulated kernels use neither.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_CUDA_EMULATION_CUDNN_H
#define BLPA_CUDA_EMULATION_CUDNN_H

typedef struct cudnnContext *cudnnHandle_t;
typedef enum { CUDNN_STATUS_SUCCESS = 0 } cudnnStatus_t;

#endif // BLPA_CUDA_EMULATION_CUDNN_H
