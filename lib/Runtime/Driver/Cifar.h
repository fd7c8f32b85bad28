//===- Cifar.h - CIFAR-10/100 binary files ----------------------*- C++ -*-===//
//
// The binary format the paper's CIFAR experiments use: records of the label
// (CIFAR-10: one byte; CIFAR-100: the coarse then the fine label byte)
// followed by 3 x 32 x 32 pixel bytes, channel after channel.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_CIFAR_H
#define BLPA_RUNTIME_DRIVER_CIFAR_H

#include "Idx.h"

#include <string>

namespace blpa::driver {

/// Whether `dir` holds CIFAR-10 (data_batch_*.bin) or CIFAR-100 (train.bin)
/// binary files.
bool isCifarDirectory(const std::string &dir);

/// Split "train" (CIFAR-10: every data_batch_<k>.bin, k = 1, 2, ...;
/// CIFAR-100: train.bin) or "test" (test_batch.bin; test.bin), labelled
/// with the (fine) class. Each channel is normalized with the mean and
/// standard deviation of the training split.
ImageSet loadCifar(const std::string &dir, const std::string &split,
                   const std::string &flag);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_CIFAR_H
