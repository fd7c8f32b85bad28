//===- Rendezvous.h - How the replicas of a job find each other -*- C++ -*-===//
//
// A communicator that is not MPI (NCCL's) needs two things from outside:
// each process's place in the job, which the launcher (mpirun, srun,
// torchrun) puts in the environment, and one blob that rank 0 makes (NCCL's
// unique id, which names rank 0's own bootstrap socket) handed to every
// other rank. The hand-over is a TCP connection to rank 0 at MASTER_ADDR
// and MASTER_PORT, as torchrun's is, so that nothing needs MPI or a shared
// file system. Plain C++ and POSIX sockets: blpa-comm-test runs it without
// a GPU.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMM_RENDEZVOUS_H
#define BLPA_RUNTIME_COMM_RENDEZVOUS_H

#include <functional>
#include <string>

namespace blpa::comm {

/// A process's place in its job.
struct LaunchPlace {
  int rank = 0;
  int size = 1;
  /// Rank among the job's processes on this machine (chooses the GPU).
  int localRank = 0;
  /// Which environment said so ("Open MPI", "Slurm", ...; "none" alone).
  std::string launcher = "none";
  /// Where rank 0 serves the rendezvous (MASTER_ADDR, MASTER_PORT).
  std::string host = "127.0.0.1";
  int port = 29500;
};

/// Reads a variable of the environment; null when unset.
using EnvironmentReader = std::function<const char *(const char *)>;

/// The place the launcher's environment gives this process (Open MPI's
/// OMPI_COMM_WORLD_*, MPICH's PMI_*, Slurm's srun SLURM_* or torchrun's
/// RANK/WORLD_SIZE, the first found), rank 0 of 1 without any. False with
/// `error` set when a variable is not a number or the rank is outside the
/// job.
bool readLaunchPlace(const EnvironmentReader &environment, LaunchPlace &place,
                     std::string &error);

/// Rank 0's `blob` handed to every rank of `place`'s job: rank 0 serves it
/// at place.port until every other rank has it, the others connect to
/// place.host:place.port (retrying while rank 0 is not up yet). False with
/// `error` set (one sentence, no rank prefix) when that does not happen
/// within `timeoutSeconds` or the two sides disagree on the job's size.
bool shareFromRankZero(const LaunchPlace &place, std::string &blob,
                       double timeoutSeconds, std::string &error);

} // namespace blpa::comm

#endif // BLPA_RUNTIME_COMM_RENDEZVOUS_H
