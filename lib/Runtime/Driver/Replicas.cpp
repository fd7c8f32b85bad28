//===- Replicas.cpp - The processes of a data-parallel job ----------------===//

#include "Replicas.h"
#include "Error.h"
#include "Manifest.h"
#include "Options.h"

#include "blpa/Runtime/Runtime.h"

#include <cstdio>
#include <cstdlib>

// Defined by the all-reduce library, which blpa-opt links only into
// data-parallel executables: weak, so that every other executable links
// without it.
#pragma weak blpa_comm_init
#pragma weak blpa_comm_allreduce_doubles
#pragma weak blpa_comm_broadcast
#pragma weak blpa_comm_finalize
#pragma weak blpa_comm_abort
#pragma weak blpa_comm_bucket_times
#pragma weak blpa_comm_watch

namespace blpa::driver {

namespace {

Replicas current;

/// FNV-1a over `text`, continuing from `hash`.
uint64_t hashText(const std::string &text,
                  uint64_t hash = 1469598103934665603ull) {
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

/// Hash of the executable's plan and of the command line after argv[0]:
/// replicas started differently would not average to anything.
uint64_t runIdentity(int argc, char **argv) {
  uint64_t hash = hashText(blpa_manifest);
  for (int i = 1; i < argc; ++i)
    hash = hashText(std::string(argv[i]) + '\0', hash);
  return hash;
}

} // namespace

void Replicas::sum(std::vector<double> &values) const {
  if (comm)
    blpa_comm_allreduce_doubles(comm, values.data(), int64_t(values.size()));
}

void Replicas::shareLeaders(void *data, int64_t bytes) const {
  if (comm)
    blpa_comm_broadcast(comm, data, bytes, 0);
}

double Replicas::mean(double value) const {
  if (!comm)
    return value;
  blpa_comm_allreduce_doubles(comm, &value, 1);
  return value / size;
}

void Replicas::requireSame(
    uint64_t value,
    const std::function<std::string(uint64_t)> &complaint) const {
  if (!comm)
    return;
  uint64_t leaders = value;
  blpa_comm_broadcast(comm, &leaders, sizeof(leaders), 0);
  // A replica that differs says so before the others can learn it, and
  // then every replica leaves the job normally: an abort could end one
  // before its line is out.
  double differs = leaders != value;
  if (differs)
    std::fprintf(stderr, "error: rank %d of %d: %s\n", rank, size,
                 complaint(leaders).c_str());
  blpa_comm_allreduce_doubles(comm, &differs, 1);
  if (differs == 0)
    return;
  std::fflush(stdout);
  blpa_comm_finalize(comm);
  std::exit(1);
}

bool Replicas::bucketTimes(int64_t bucket, double times[3]) const {
  return comm && blpa_comm_bucket_times(comm, bucket, times);
}

Replicas::Watch::Watch(const Replicas &replicas, const char *what)
    : comm(blpa_comm_watch ? replicas.comm : nullptr) {
  if (comm)
    blpa_comm_watch(comm, what);
}

Replicas::Watch::~Watch() {
  if (comm)
    blpa_comm_watch(comm, nullptr);
}

void Replicas::abort(int status) const {
  if (comm)
    blpa_comm_abort(comm, status);
  std::exit(status);
}

const Replicas &joinReplicas(const Manifest &manifest, const Options &options,
                             int *argc, char ***argv) {
  if (!manifest.gradientBuckets)
    return current;
  if (!blpa_comm_init)
    throw DriverError("this executable was compiled with --data-parallel but "
                      "linked without its all-reduce library; rebuild it "
                      "with blpa-opt");
  blpa_comm_info info{};
  current.comm = blpa_comm_init(argc, argv, options.commTimeoutSeconds, &info);
  current.rank = info.rank;
  current.size = info.size;
  current.requireSame(runIdentity(*argc, *argv), [](uint64_t) {
    return std::string("started with another executable or other flags "
                       "than rank 0; start every rank with the same command");
  });
  // One replica speaks for the job; errors still reach stderr from any.
  if (!current.isLeader() && !std::freopen("/dev/null", "w", stdout))
    throw DriverError("cannot silence the output of rank " +
                      std::to_string(current.rank));
  return current;
}

const Replicas &replicas() { return current; }

void leaveReplicas() {
  if (current.comm)
    blpa_comm_finalize(current.comm);
  current = Replicas();
}

} // namespace blpa::driver
