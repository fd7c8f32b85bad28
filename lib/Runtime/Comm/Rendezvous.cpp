//===- Rendezvous.cpp - How the replicas of a job find each other ---------===//
//
// The wire protocol: a rank connects to rank 0 and sends 16 bytes, the
// magic "blpa-rdv1" padded with zeros, then its rank and the job size it
// was told (two 32-bit integers, network order). Rank 0 answers a rank of
// its job with the blob's length (32 bits) and the blob, and a rank that
// counts another job size with length 0xffffffff. Connections that do not
// start with the magic (a port scanner, a stale job) are dropped unanswered.
//
//===----------------------------------------------------------------------===//

#include "Rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

namespace blpa::comm {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char magic[16] = "blpa-rdv1";
constexpr uint32_t wrongSize = 0xffffffffu;

/// Parses a whole non-negative decimal number.
bool parseCount(const char *text, int &value) {
  if (!text || !*text)
    return false;
  char *end = nullptr;
  errno = 0;
  long parsed = std::strtol(text, &end, 10);
  if (*end || errno || parsed < 0 || parsed > (1 << 30))
    return false;
  value = int(parsed);
  return true;
}

/// One launcher's variables: rank, size, local rank.
struct LauncherVariables {
  const char *name, *rank, *size, *localRank;
};

// Open MPI's mpirun; MPICH's and Intel MPI's hydra; Slurm's srun (the step's
// task count: a batch script has SLURM_NTASKS but no step of its own);
// torchrun and other launchers of PyTorch's convention.
constexpr LauncherVariables launchers[] = {
    {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
    {"Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
};

/// Closes a socket when it goes out of scope.
struct Socket {
  int fd = -1;
  explicit Socket(int fd) : fd(fd) {}
  Socket(const Socket &) = delete;
  Socket &operator=(const Socket &) = delete;
  ~Socket() {
    if (fd >= 0)
      ::close(fd);
  }
};

double secondsLeft(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

/// Waits until `fd` is ready for `events` or the deadline passes.
bool await(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    double left = secondsLeft(deadline);
    if (left <= 0)
      return false;
    pollfd entry{fd, events, 0};
    int ready = ::poll(&entry, 1, int(left * 1000) + 1);
    if (ready > 0)
      return true;
    if (ready < 0 && errno != EINTR)
      return false;
  }
}

/// Reads or writes exactly `bytes` before the deadline.
bool transfer(int fd, void *data, size_t bytes, bool sending,
              Clock::time_point deadline) {
  auto *cursor = static_cast<char *>(data);
  while (bytes > 0) {
    if (!await(fd, sending ? POLLOUT : POLLIN, deadline))
      return false;
    ssize_t done = sending ? ::send(fd, cursor, bytes, MSG_NOSIGNAL)
                           : ::recv(fd, cursor, bytes, 0);
    if (done < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (done <= 0)
      return false;
    cursor += done;
    bytes -= size_t(done);
  }
  return true;
}

bool sendAll(int fd, const void *data, size_t bytes,
             Clock::time_point deadline) {
  return transfer(fd, const_cast<void *>(data), bytes, true, deadline);
}

bool sendWord(int fd, uint32_t value, Clock::time_point deadline) {
  value = htonl(value);
  return sendAll(fd, &value, sizeof(value), deadline);
}

bool receiveWord(int fd, uint32_t &value, Clock::time_point deadline) {
  if (!transfer(fd, &value, sizeof(value), false, deadline))
    return false;
  value = ntohl(value);
  return true;
}

std::string where(const LaunchPlace &place) {
  return place.host + ":" + std::to_string(place.port);
}

/// Rank 0: serves `blob` to the other size-1 ranks.
bool serve(const LaunchPlace &place, const std::string &blob,
           Clock::time_point deadline, std::string &error) {
  Socket listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int yes = 1;
  ::setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(uint16_t(place.port));
  if (listener.fd < 0 ||
      ::bind(listener.fd, reinterpret_cast<sockaddr *>(&address),
             sizeof(address)) != 0 ||
      ::listen(listener.fd, 128) != 0) {
    error = "rank 0 cannot listen on port " + std::to_string(place.port) +
            " (" + std::strerror(errno) +
            "); set MASTER_PORT to a free port, the same for every rank";
    return false;
  }
  std::set<uint32_t> served;
  while (int(served.size()) < place.size - 1) {
    if (!await(listener.fd, POLLIN, deadline))
      break;
    Socket peer(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
    char greeting[sizeof(magic)];
    uint32_t rank = 0, size = 0;
    // A connection gets a second to say who it is, so that a stray one
    // cannot stall the job.
    auto patience = std::min(deadline, Clock::now() + std::chrono::seconds(1));
    if (peer.fd < 0 ||
        !transfer(peer.fd, greeting, sizeof(greeting), false, patience) ||
        std::memcmp(greeting, magic, sizeof(magic)) != 0 ||
        !receiveWord(peer.fd, rank, patience) ||
        !receiveWord(peer.fd, size, patience))
      continue;
    if (size != uint32_t(place.size)) {
      sendWord(peer.fd, wrongSize, patience);
      continue;
    }
    if (sendWord(peer.fd, uint32_t(blob.size()), patience) &&
        sendAll(peer.fd, blob.data(), blob.size(), patience) && rank > 0 &&
        rank < size)
      served.insert(rank);
  }
  if (int(served.size()) == place.size - 1)
    return true;
  error = std::to_string(place.size - 1 - int(served.size())) + " of the " +
          std::to_string(place.size - 1) +
          " other ranks did not connect to rank 0 at port " +
          std::to_string(place.port) + " in time";
  return false;
}

/// Connects to rank 0, retrying while it is not listening yet.
int connectToRankZero(const LaunchPlace &place, Clock::time_point deadline,
                      std::string &error) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo *found = nullptr;
  int status = ::getaddrinfo(
      place.host.c_str(), std::to_string(place.port).c_str(), &hints, &found);
  if (status != 0) {
    error = "cannot resolve MASTER_ADDR " + place.host + " (" +
            ::gai_strerror(status) + ")";
    return -1;
  }
  sockaddr_storage address{};
  socklen_t length = found->ai_addrlen;
  std::memcpy(&address, found->ai_addr, length);
  ::freeaddrinfo(found);
  while (secondsLeft(deadline) > 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 &&
        ::connect(fd, reinterpret_cast<sockaddr *>(&address), length) == 0)
      return fd;
    if (fd >= 0)
      ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error = "rank 0 did not answer at " + where(place) +
          " in time (MASTER_ADDR and MASTER_PORT must name rank 0's machine "
          "and a port it can listen on)";
  return -1;
}

/// Any other rank: fetches the blob from rank 0.
bool fetch(const LaunchPlace &place, std::string &blob,
           Clock::time_point deadline, std::string &error) {
  Socket peer(connectToRankZero(place, deadline, error));
  if (peer.fd < 0)
    return false;
  uint32_t length = 0;
  if (!sendAll(peer.fd, magic, sizeof(magic), deadline) ||
      !sendWord(peer.fd, uint32_t(place.rank), deadline) ||
      !sendWord(peer.fd, uint32_t(place.size), deadline) ||
      !receiveWord(peer.fd, length, deadline)) {
    error = "the rendezvous with rank 0 at " + where(place) +
            " broke off or did not finish in time";
    return false;
  }
  if (length == wrongSize) {
    error = "rank 0 at " + where(place) +
            " leads a job of another size "
            "than " +
            std::to_string(place.size) + " ranks (another job on that port?)";
    return false;
  }
  blob.assign(length, '\0');
  if (!transfer(peer.fd, blob.data(), length, false, deadline)) {
    error = "rank 0 at " + where(place) + " stopped sending";
    return false;
  }
  return true;
}

} // namespace

bool readLaunchPlace(const EnvironmentReader &environment, LaunchPlace &place,
                     std::string &error) {
  place = LaunchPlace();
  for (const LauncherVariables &launcher : launchers) {
    const char *size = environment(launcher.size);
    if (!size)
      continue;
    const char *rank = environment(launcher.rank);
    const char *localRank = environment(launcher.localRank);
    place.launcher = launcher.name;
    if (!parseCount(size, place.size) || place.size < 1 ||
        !parseCount(rank, place.rank) || place.rank >= place.size ||
        (localRank && !parseCount(localRank, place.localRank))) {
      error = std::string(launcher.name) + "'s " + launcher.rank + "=" +
              (rank ? rank : "(unset)") + ", " + launcher.size + "=" + size +
              " do not name a rank of the job";
      return false;
    }
    break;
  }
  if (const char *host = environment("MASTER_ADDR"); host && *host)
    place.host = host;
  if (const char *port = environment("MASTER_PORT")) {
    if (!parseCount(port, place.port) || place.port < 1 || place.port > 65535) {
      error = std::string("MASTER_PORT=") + port + " is not a TCP port";
      return false;
    }
  }
  return true;
}

bool shareFromRankZero(const LaunchPlace &place, std::string &blob,
                       double timeoutSeconds, std::string &error) {
  if (place.size == 1)
    return true;
  auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(timeoutSeconds));
  return place.rank == 0 ? serve(place, blob, deadline, error)
                         : fetch(place, blob, deadline, error);
}

} // namespace blpa::comm
