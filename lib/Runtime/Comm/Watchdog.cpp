//===- Watchdog.cpp - Bounds on waits the host cannot bound ---------------===//

#include "Watchdog.h"

namespace blpa::comm {

Watchdog::Watchdog(Clock::duration timeout,
                   std::function<void(const std::string &)> expired)
    : timeout(timeout), expired(std::move(expired)) {
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

void Watchdog::run() {
  std::unique_lock<std::mutex> hold(lock);
  while (!stopping) {
    if (watched.empty()) {
      changed.wait(hold);
      continue;
    }
    // Woken early: something else is watched now, or the comm stops.
    if (changed.wait_until(hold, deadline) == std::cv_status::no_timeout)
      continue;
    if (stopping || watched.empty() || Clock::now() < deadline)
      continue;
    std::string what = std::move(watched);
    watched.clear(); // once: a callback that returns is not called again
    hold.unlock();
    expired(what);
    hold.lock();
  }
}

} // namespace blpa::comm
