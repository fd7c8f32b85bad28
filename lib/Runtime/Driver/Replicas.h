//===- Replicas.h - The processes of a data-parallel job --------*- C++ -*-===//
//
// A --data-parallel executable is one replica of a job that mpirun or srun
// starts: every replica trains on its own part of each batch and the step
// averages the gradients (blpa_allreduce_*). This is the driver's side:
// joining the job, agreeing on what runs, and which replica speaks.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_REPLICAS_H
#define BLPA_RUNTIME_DRIVER_REPLICAS_H

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct blpa_comm;

namespace blpa::driver {

struct Manifest;
struct Options;

/// This process's place in the job; rank 0 of 1 without --data-parallel.
struct Replicas {
  int rank = 0;
  int size = 1;
  /// Null in a single-process executable.
  blpa_comm *comm = nullptr;

  /// Only the leader prints, logs, evaluates into the log and writes files.
  bool isLeader() const { return rank == 0; }
  /// The mean of `value` over the replicas.
  double mean(double value) const;
  /// Sums `values` over the replicas, in place.
  void sum(std::vector<double> &values) const;
  /// Copies rank 0's `bytes` at `data` to every replica.
  void shareLeaders(void *data, int64_t bytes) const;
  /// Ends the job unless every replica has rank 0's `value`; each replica
  /// that differs first prints one line, "error: rank R of N: " and
  /// `complaint(rank 0's value)`.
  void requireSame(uint64_t value,
                   const std::function<std::string(uint64_t)> &complaint) const;
  /// When this replica's all-reduce of `bucket` was last queued, began and
  /// ended (the profiling hooks' clock); false when it never ran.
  bool bucketTimes(int64_t bucket, double times[3]) const;
  /// Ends every replica after an error this one printed.
  [[noreturn]] void abort(int status) const;

  /// While alive, `what` (work that waits for the other replicas) ends the
  /// job when it takes longer than --comm-timeout, where the comm cannot
  /// bound its own waits (blpa_comm_watch).
  class Watch {
  public:
    Watch(const Replicas &replicas, const char *what);
    ~Watch();
    Watch(const Watch &) = delete;
    Watch &operator=(const Watch &) = delete;

  private:
    blpa_comm *comm;
  };
};

/// The job this process belongs to: for a data-parallel executable, joins
/// it (its own stdout goes quiet unless it leads) and checks that every
/// replica runs the same executable with the same flags; otherwise rank 0
/// of 1. The result stays valid until leaveReplicas.
const Replicas &joinReplicas(const Manifest &manifest, const Options &options,
                             int *argc, char ***argv);
/// What joinReplicas found (rank 0 of 1 before it).
const Replicas &replicas();
/// Leaves the job after a run that ended normally.
void leaveReplicas();

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_REPLICAS_H
