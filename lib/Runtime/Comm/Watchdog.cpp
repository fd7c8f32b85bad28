//===- Watchdog.cpp - Bounds on waits the host cannot bound ---------------===//

#include "Watchdog.h"

namespace blpa::comm {

Watchdog::Watchdog(Clock::duration timeout, Expired expired, Probe probe,
                   Clock::duration probeEvery)
    : timeout(timeout), expired(std::move(expired)), probe(std::move(probe)),
      probeEvery(probeEvery) {
  thread = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> hold(lock);
    stopping = true;
  }
  changed.notify_all();
  thread.join();
}

void Watchdog::watch(const char *what) {
  {
    std::lock_guard<std::mutex> hold(lock);
    watched = what ? what : "";
    deadline = Clock::now() + timeout;
  }
  changed.notify_all();
}

std::string Watchdog::probeError(std::unique_lock<std::mutex> &hold) {
  if (!probe)
    return "";
  hold.unlock();
  std::string error = probe();
  hold.lock();
  return error;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> hold(lock);
  while (!stopping) {
    if (watched.empty()) {
      changed.wait(hold);
      continue;
    }
    // Woken early: something else is watched now, or the comm stops.
    auto wake =
        probe ? std::min(deadline, Clock::now() + probeEvery) : deadline;
    if (changed.wait_until(hold, wake) == std::cv_status::no_timeout)
      continue;
    std::string error;
    if (Clock::now() < deadline && (error = probeError(hold)).empty())
      continue;
    // The wait may have ended while the probe ran.
    if (stopping || watched.empty())
      continue;
    std::string what = std::move(watched);
    watched.clear(); // once: a callback that returns is not called again
    hold.unlock();
    expired(what, error);
    hold.lock();
  }
}

} // namespace blpa::comm
