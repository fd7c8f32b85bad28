//===- CommTest.cpp - The rendezvous of data-parallel jobs without MPI ----===//
//
// blpa-comm-test: what NCCL's communicator needs that runs without a GPU
// (lib/Runtime/Comm/Rendezvous.cpp, Watchdog.cpp). Reading the launchers'
// environments, and handing a fresh random blob from rank 0 to every other
// rank of real processes over TCP on this machine, with the failures a job
// meets: a rank that never comes, no rank 0, a rank 0 of another job size,
// a stray connection; and the watchdog's bound on a wait. Prints "N passed,
// N failed".
//
//===----------------------------------------------------------------------===//

#include "Rendezvous.h"
#include "Watchdog.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace blpa::comm;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const std::string &what) {
  ++(ok ? passed : failed);
  if (!ok)
    std::printf("FAIL: %s\n", what.c_str());
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// readLaunchPlace on exactly `variables`.
bool placeFrom(const std::map<std::string, std::string> &variables,
               LaunchPlace &place, std::string &error) {
  return readLaunchPlace(
      [&](const char *name) -> const char * {
        auto found = variables.find(name);
        return found == variables.end() ? nullptr : found->second.c_str();
      },
      place, error);
}

void testLaunchers() {
  LaunchPlace place;
  std::string error;
  check(placeFrom({}, place, error) && place.rank == 0 && place.size == 1 &&
            place.launcher == "none" && place.host == "127.0.0.1" &&
            place.port == 29500,
        "no launcher: rank 0 of 1, MASTER_ADDR and MASTER_PORT defaults");
  check(placeFrom({{"OMPI_COMM_WORLD_RANK", "3"},
                   {"OMPI_COMM_WORLD_SIZE", "8"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                   {"RANK", "5"},
                   {"WORLD_SIZE", "6"}},
                  place, error) &&
            place.rank == 3 && place.size == 8 && place.localRank == 1 &&
            place.launcher == "Open MPI",
        "Open MPI's variables, before torchrun's");
  check(placeFrom({{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}}, place, error) &&
            place.rank == 2 && place.size == 4 && place.localRank == 0,
        "MPICH's variables without a local rank");
  check(placeFrom({{"SLURM_PROCID", "5"},
                   {"SLURM_STEP_NUM_TASKS", "16"},
                   {"SLURM_LOCALID", "1"},
                   {"MASTER_ADDR", "node17"},
                   {"MASTER_PORT", "4242"}},
                  place, error) &&
            place.rank == 5 && place.size == 16 && place.localRank == 1 &&
            place.host == "node17" && place.port == 4242,
        "srun's variables and the rendezvous address");
  check(
      placeFrom({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}}, place, error) &&
          place.size == 1,
      "a Slurm batch script (no step of its own) is a job of one");
  check(placeFrom({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}},
                  place, error) &&
            place.rank == 1 && place.launcher == "torchrun",
        "torchrun's variables");
  check(!placeFrom({{"RANK", "2"}, {"WORLD_SIZE", "2"}}, place, error) &&
            contains(error, "RANK=2, WORLD_SIZE=2 do not name a rank"),
        "a rank outside the job is refused: " + error);
  check(!placeFrom({{"PMI_SIZE", "four"}, {"PMI_RANK", "0"}}, place, error) &&
            contains(error, "MPICH"),
        "a size that is not a number is refused: " + error);
  check(!placeFrom({{"MASTER_PORT", "70000"}}, place, error) &&
            contains(error, "MASTER_PORT=70000 is not a TCP port"),
        "a port out of range is refused: " + error);
}

/// A port nothing listens on now (the kernel's choice for port 0).
int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

/// What one rank of a test job ended with.
struct Outcome {
  bool ok = false;
  std::string blob, error;
};

/// Runs `body` in a child process; its outcome comes back through a pipe
/// ("1" or "0", then the blob or the error).
pid_t spawn(const std::function<Outcome()> &body, int &readEnd) {
  int ends[2];
  if (::pipe(ends) != 0)
    return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ends[0]);
    Outcome outcome = body();
    std::string message =
        (outcome.ok ? "1" : "0") + (outcome.ok ? outcome.blob : outcome.error);
    ssize_t written = ::write(ends[1], message.data(), message.size());
    ::_exit(written == ssize_t(message.size()) ? 0 : 1);
  }
  ::close(ends[1]);
  readEnd = ends[0];
  return pid;
}

Outcome collect(pid_t pid, int readEnd) {
  std::string message;
  char chunk[4096];
  for (ssize_t got; (got = ::read(readEnd, chunk, sizeof(chunk))) > 0;)
    message.append(chunk, size_t(got));
  ::close(readEnd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Outcome outcome;
  if (message.empty())
    return outcome;
  outcome.ok = message[0] == '1';
  (outcome.ok ? outcome.blob : outcome.error) = message.substr(1);
  return outcome;
}

/// Rank `rank` of a job of `size` at `port` sharing `blob` (rank 0's).
Outcome rendezvous(int rank, int size, int port, std::string blob,
                   double timeout) {
  LaunchPlace place;
  place.rank = rank;
  place.size = size;
  place.port = port;
  Outcome outcome;
  outcome.ok = shareFromRankZero(place, blob, timeout, outcome.error);
  outcome.blob = blob;
  return outcome;
}

/// Starts the ranks in `ranks` of a job of `size` (rank 0 starting last, so
/// that the others must retry) and collects their outcomes.
std::vector<Outcome> runJob(const std::vector<int> &ranks, int size,
                            const std::string &blob, double timeout,
                            int port = freePort(),
                            const std::vector<int> &sizes = {}) {
  std::vector<std::pair<pid_t, int>> children;
  for (size_t i = 0; i < ranks.size(); ++i) {
    int rank = ranks[i], told = sizes.empty() ? size : sizes[i];
    int readEnd = -1;
    pid_t pid = spawn(
        [=] {
          if (rank == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
          return rendezvous(rank, told, port, rank == 0 ? blob : "", timeout);
        },
        readEnd);
    children.push_back({pid, readEnd});
  }
  std::vector<Outcome> outcomes;
  for (auto [pid, readEnd] : children)
    outcomes.push_back(collect(pid, readEnd));
  return outcomes;
}

std::string randomBlob(std::mt19937_64 &random) {
  std::string blob(128, '\0');
  for (char &c : blob)
    c = char(random() & 0xff); // NCCL's ids hold zero bytes too
  return blob;
}

void testHandOver(std::mt19937_64 &random) {
  std::string blob = randomBlob(random);
  std::vector<Outcome> job = runJob({1, 2, 3, 0}, 4, blob, 20);
  bool all = job.size() == 4;
  for (const Outcome &rank : job)
    all = all && rank.ok && rank.blob == blob;
  check(all, "4 ranks: every rank gets rank 0's 128 random bytes" +
                 (job[0].ok ? "" : ": " + job[0].error));

  LaunchPlace alone;
  std::string kept = blob, error;
  check(shareFromRankZero(alone, kept, 0.001, error) && kept == blob,
        "a job of one needs no rendezvous");
}

void testFailures(std::mt19937_64 &random) {
  std::string blob = randomBlob(random);
  auto started = std::chrono::steady_clock::now();
  std::vector<Outcome> job = runJob({1, 0}, 3, blob, 1.5);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();
  check(job[0].ok && job[0].blob == blob,
        "a rank that came gets the blob although another never comes");
  check(!job[1].ok &&
            contains(job[1].error, "1 of the 2 other ranks did not connect"),
        "rank 0 names the ranks that never came: " + job[1].error);
  check(seconds < 10, "rank 0 gives up after the time-out (" +
                          std::to_string(seconds) + " s for 1.5 s)");

  job = runJob({1}, 2, "", 0.5);
  check(!job[0].ok &&
            contains(job[0].error, "rank 0 did not answer at "
                                   "127.0.0.1:") &&
            contains(job[0].error, "MASTER_ADDR"),
        "no rank 0: the error names the address: " + job[0].error);

  job = runJob({1, 0}, 2, blob, 1.0, freePort(), {3, 2});
  check(!job[0].ok && contains(job[0].error, "leads a job of another size "
                                             "than 3 ranks"),
        "a rank 0 of another job size is refused: " + job[0].error);
  check(!job[1].ok, "rank 0 does not count a rank of another job size");
}

/// A connection that sends nothing useful must not take a rank's place.
void testStrayConnection(std::mt19937_64 &random) {
  std::string blob = randomBlob(random);
  int port = freePort();
  int readEnd = -1;
  pid_t leader =
      spawn([=] { return rendezvous(0, 2, port, blob, 20); }, readEnd);
  // The stray: connects as soon as rank 0 listens, says nothing, stays.
  int stray = -1;
  for (int attempt = 0; attempt < 200 && stray < 0; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(uint16_t(port));
    if (::connect(fd, reinterpret_cast<sockaddr *>(&address),
                  sizeof(address)) == 0) {
      stray = fd;
      break;
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Outcome rank1 = rendezvous(1, 2, port, "", 20);
  Outcome rank0 = collect(leader, readEnd);
  if (stray >= 0)
    ::close(stray);
  check(stray >= 0 && rank1.ok && rank1.blob == blob && rank0.ok,
        "a silent stray connection does not stop the job: " + rank1.error +
            rank0.error);
}

/// The watchdog fires once for what stays watched past the time-out, names
/// it, and not for what ended or was replaced in time. Its time-out is a
/// second, so that a loaded machine's scheduling cannot fake an expiry.
void testWatchdog() {
  using namespace std::chrono;
  std::mutex lock;
  std::vector<std::pair<std::string, double>> expiries;
  auto start = steady_clock::now();
  auto since = [&] {
    return duration<double>(steady_clock::now() - start).count();
  };
  auto fired = [&] {
    std::lock_guard<std::mutex> hold(lock);
    return expiries;
  };
  {
    Watchdog watchdog(seconds(1),
                      [&](const std::string &what, const std::string &error) {
                        std::lock_guard<std::mutex> hold(lock);
                        expiries.push_back({what + error, since()});
                      });
    {
      Watchdog::Scope scope(watchdog, "a wait that ends in time");
      std::this_thread::sleep_for(milliseconds(100));
    }
    start = steady_clock::now();
    watchdog.watch("the first wait");
    std::this_thread::sleep_for(milliseconds(200));
    watchdog.watch("the wait that replaced it");
    for (int i = 0; i < 100 && fired().empty(); ++i)
      std::this_thread::sleep_for(milliseconds(50));
    std::this_thread::sleep_for(milliseconds(300));
    std::vector<std::pair<std::string, double>> seen = fired();
    check(seen.size() == 1 && seen[0].first == "the wait that replaced it" &&
              seen[0].second >= 1.2 && seen[0].second < 5,
          "the watchdog fires once, for the replacing wait, a time-out after "
          "it began" +
              (seen.empty() ? std::string(": never")
                            : ": after " + std::to_string(seen[0].second) +
                                  " s for " + seen[0].first));
    watchdog.watch("a wait still running when the comm ends");
  }
  check(fired().size() == 1, "a watchdog stopped while watching does not "
                             "fire");
}

/// A probe that reports an error ends the watched wait long before the
/// time-out, with the probe's error; one that reports none changes nothing.
void testWatchdogProbe() {
  using namespace std::chrono;
  std::mutex lock;
  std::vector<std::pair<std::string, double>> expiries;
  std::atomic<bool> broken{false};
  std::atomic<int> probes{0};
  auto start = steady_clock::now();
  {
    Watchdog watchdog(
        seconds(30),
        [&](const std::string &what, const std::string &error) {
          std::lock_guard<std::mutex> hold(lock);
          expiries.push_back(
              {what + ": " + error,
               duration<double>(steady_clock::now() - start).count()});
        },
        [&] {
          ++probes;
          return std::string(broken ? "the peer is gone" : "");
        },
        milliseconds(20));
    {
      Watchdog::Scope scope(watchdog, "a healthy wait");
      std::this_thread::sleep_for(milliseconds(300));
    }
    int probedWhileHealthy = probes;
    start = steady_clock::now();
    watchdog.watch("a doomed wait");
    std::this_thread::sleep_for(milliseconds(100));
    broken = true;
    for (int i = 0; i < 200; ++i) {
      std::this_thread::sleep_for(milliseconds(25));
      std::lock_guard<std::mutex> hold(lock);
      if (!expiries.empty())
        break;
    }
    std::lock_guard<std::mutex> hold(lock);
    check(probedWhileHealthy >= 3,
          "the probe is asked while a wait is watched (" +
              std::to_string(probedWhileHealthy) + " times in 0.3 s)");
    check(expiries.size() == 1 &&
              expiries[0].first == "a doomed wait: the peer is gone" &&
              expiries[0].second < 5,
          "a probe's error ends the wait at once, not at the 30 s time-out" +
              (expiries.empty()
                   ? std::string(": never")
                   : ": " + expiries[0].first + " after " +
                         std::to_string(expiries[0].second) + " s"));
  }
}

} // namespace

int main() {
  std::random_device seed;
  std::mt19937_64 random(seed());
  testLaunchers();
  testHandOver(random);
  testFailures(random);
  testStrayConnection(random);
  testWatchdog();
  testWatchdogProbe();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
