//===- NpyData.h - Training data as NumPy arrays ----------------*- C++ -*-===//
//
// `--data X.npy,Y.npy` (a training split only) or `--data DIR` holding
// x_train.npy, y_train.npy and optionally x_test.npy, y_test.npy: float32
// samples [N, ...] in C order, used as they are (normalize them when saving),
// and int32 or int64 labels [N]. The samples are memory-mapped, so a data
// set of any size costs only the pages a batch touches.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_NPYDATA_H
#define BLPA_RUNTIME_DRIVER_NPYDATA_H

#include "Idx.h"

#include <string>

namespace blpa::driver {

/// Whether `data` names NumPy data: two .npy paths, or a directory with
/// x_train.npy.
bool isNpyData(const std::string &data);

/// The "train" or "test" split; the test split of `X.npy,Y.npy`, or of a
/// directory without x_test.npy, is empty.
ImageSet loadNpyData(const std::string &data, const std::string &split,
                     const std::string &flag);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_NPYDATA_H
