//===- Watchdog.h - Bounds on waits the host cannot bound -------*- C++ -*-===//
//
// NCCL's collectives wait for the other ranks on the GPU: a host thread
// blocked in cudaStreamSynchronize behind a sum whose peer died waits
// forever. A watchdog thread bounds such waits instead: the comm marks what
// it is about to wait for, and when that stays marked past the time-out the
// watchdog calls `expired` (which ends the process with one line). Meanwhile
// it asks a probe every so often whether the transport already knows the
// wait is lost (NCCL's asynchronous error after a peer's death), so that a
// dead rank ends the others at once rather than at the time-out. Plain
// C++: blpa-comm-test runs it without a GPU.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMM_WATCHDOG_H
#define BLPA_RUNTIME_COMM_WATCHDOG_H

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace blpa::comm {

class Watchdog {
public:
  using Clock = std::chrono::steady_clock;

  /// What ended a watched wait: empty for the time-out, else the probe's
  /// error.
  using Expired =
      std::function<void(const std::string &what, const std::string &error)>;
  /// Returns the error that dooms the waits, or an empty string.
  using Probe = std::function<std::string()>;

  /// Starts the thread; `expired(what, error)` runs on it, once, when
  /// `what` stays watched for longer than `timeout`, or when `probe`
  /// (asked every `probeEvery` while something is watched) reports an
  /// error first. The comm's `expired` ends the process.
  Watchdog(Clock::duration timeout, Expired expired, Probe probe = nullptr,
           Clock::duration probeEvery = std::chrono::milliseconds(100));
  /// Stops the thread (whatever is watched then is let go).
  ~Watchdog();
  Watchdog(const Watchdog &) = delete;
  Watchdog &operator=(const Watchdog &) = delete;

  /// From now, `what` must end within the time-out; null or empty: nothing
  /// is watched.
  void watch(const char *what);

  /// Watches `what` while alive.
  class Scope {
  public:
    Scope(Watchdog &watchdog, const char *what) : watchdog(watchdog) {
      watchdog.watch(what);
    }
    ~Scope() { watchdog.watch(nullptr); }
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;

  private:
    Watchdog &watchdog;
  };

private:
  void run();
  /// The probe's error, or an empty string; called with `lock` released.
  std::string probeError(std::unique_lock<std::mutex> &hold);

  const Clock::duration timeout;
  const Expired expired;
  const Probe probe;
  const Clock::duration probeEvery;
  std::mutex lock;
  std::condition_variable changed;
  std::string watched;
  Clock::time_point deadline;
  bool stopping = false;
  std::thread thread;
};

} // namespace blpa::comm

#endif // BLPA_RUNTIME_COMM_WATCHDOG_H
