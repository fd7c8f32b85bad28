//===- Watchdog.h - Bounds on waits the host cannot bound -------*- C++ -*-===//
//
// NCCL's collectives wait for the other ranks on the GPU: a host thread
// blocked in cudaStreamSynchronize behind a sum whose peer died waits
// forever. A watchdog thread bounds such waits instead: the comm marks what
// it is about to wait for, and when that stays marked past the time-out the
// watchdog calls `expired` (which ends the process with one line). Plain
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

  /// Starts the thread; `expired(what)` runs on it, once, when `what`
  /// stays watched for longer than `timeout` (the comm's ends the process).
  Watchdog(Clock::duration timeout,
           std::function<void(const std::string &what)> expired);
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

  const Clock::duration timeout;
  const std::function<void(const std::string &)> expired;
  std::mutex lock;
  std::condition_variable changed;
  std::string watched;
  Clock::time_point deadline;
  bool stopping = false;
  std::thread thread;
};

} // namespace blpa::comm

#endif // BLPA_RUNTIME_COMM_WATCHDOG_H
