//===- Error.h - User-facing errors of the blpa driver ----------*- C++ -*-===//
//
// Every problem the user can cause (bad flag, missing file, wrong shape) is
// thrown as a DriverError and printed by main() as one `error: ` line with
// exit status 1, so no user mistake ends in an abort or a stack trace.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_ERROR_H
#define BLPA_RUNTIME_DRIVER_ERROR_H

#include <stdexcept>
#include <string>

namespace blpa::driver {

class DriverError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Training stopped by SIGINT after saving what it was asked to: main()
/// prints the message (one line) and exits with status 130.
class Interrupted : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// strerror(errno) as a string, captured before anything else touches errno.
std::string errnoMessage();

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_ERROR_H
