//===- NcclComm.cpp - Gradient all-reduce over NCCL for the CUDA target ---===//
//
// The data-parallel half of the runtime ABI (blpa_allreduce_start/_wait and
// the driver's blpa_comm_* calls) on NCCL, for executables whose buckets are
// in device memory. A bucket's sum runs on a stream of its own: the start
// records an event on the step's stream after the bucket's last gradient
// and the sum stream waits for it, the wait makes the step's stream wait for
// an event after the sum. So the rest of the backward pass runs while a
// bucket is summed, nothing runs on the host, and a recorded step (a CUDA
// graph) holds the sums too. NCCL's mean (ncclAvg) leaves no scaling to do.
//
// The job is joined without MPI, which the GPU machines lack: the rank and
// size come from the launcher's environment and NCCL's unique id goes from
// rank 0 to the others over TCP (Rendezvous.h). The driver's own small
// collectives (losses, start-up checks) go through the same communicator on
// another stream, between steps, when no sum is in flight, so every rank
// issues the same NCCL calls in the same order. NCCL's waits happen on the
// GPU, where nothing bounds them; a watchdog thread ends the process when
// anything watched (joining, the driver's collectives, a whole step) takes
// longer than --comm-timeout, or at once when NCCL reports an asynchronous
// error (a peer gone).
//
//===----------------------------------------------------------------------===//

#include "CommOf.h"
#include "CudaRuntime.h"
#include "Rendezvous.h"
#include "Watchdog.h"

#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct blpa_comm {
  using Clock = std::chrono::steady_clock;

  blpa::comm::LaunchPlace place;
  Clock::duration timeout{};
  ncclComm_t nccl = nullptr;
  /// The bucket sums' stream and the driver's collectives' stream.
  cudaStream_t sums = nullptr, control = nullptr;
  /// Device staging for the driver's collectives (grow-only).
  void *controlBuffer = nullptr;
  size_t controlBytes = 0;
  /// Per bucket: after its last gradient (on the step's stream) and after
  /// its sum (on `sums`).
  struct BucketEvents {
    cudaEvent_t ready = nullptr, summed = nullptr;
  };
  std::vector<BucketEvents> buckets;

  /// Bounds joining, the driver's collectives and whole steps (NCCL calls
  /// may also block on the host, connecting to the peers on first use).
  std::unique_ptr<blpa::comm::Watchdog> watchdog;
  using Watched = blpa::comm::Watchdog::Scope;
  /// Whether the watchdog may ask `nccl` for its asynchronous error (from
  /// joining until just before it is destroyed).
  bool probed = false;
  std::mutex probeLock;
  void setProbed(bool on) {
    std::lock_guard<std::mutex> hold(probeLock);
    probed = on;
  }
  /// NCCL's asynchronous error (a peer gone, a network failure), which
  /// dooms every wait on the communicator; empty while there is none.
  std::string asyncError();
  /// A driver's collective `call` (on `control`) on `bytes` of host
  /// memory at `data`, through device staging, watched as `what`.
  void onHost(void *data, size_t bytes, const char *what,
              const std::function<ncclResult_t(void *buffer)> &call);
  BucketEvents &eventsOf(int64_t bucket);
};

namespace {

[[noreturn]] void failComm(const blpa_comm *comm, const std::string &message) {
  std::fflush(stdout);
  std::fprintf(stderr, "blpa runtime error: rank %d of %d: %s\n",
               comm ? comm->place.rank : 0, comm ? comm->place.size : 1,
               message.c_str());
  std::fflush(stderr);
  // The other ranks' sums wait for this one on their GPUs; their watchdogs
  // end them within the time-out (mpirun and srun end them at once when
  // one rank exits with an error).
  std::_Exit(1);
}

void checkNccl(const blpa_comm *comm, ncclResult_t status, const char *what) {
  if (status != ncclSuccess)
    failComm(comm, std::string(what) +
                       " failed: " + ncclGetErrorString(status) + " (" +
                       ncclGetLastError(comm ? comm->nccl : nullptr) + ")");
}

void checkCuda(const blpa_comm *comm, cudaError_t status, const char *what) {
  if (status != cudaSuccess)
    failComm(comm,
             std::string(what) + " failed: " + cudaGetErrorString(status));
}

} // namespace

void blpa_comm::onHost(void *data, size_t bytes, const char *what,
                       const std::function<ncclResult_t(void *)> &call) {
  Watched watched(*watchdog, what);
  if (controlBytes < bytes) {
    if (controlBuffer)
      checkCuda(this, cudaFree(controlBuffer), "cudaFree");
    controlBuffer = nullptr;
    checkCuda(this, cudaMalloc(&controlBuffer, bytes), "cudaMalloc");
    controlBytes = bytes;
  }
  checkCuda(this,
            cudaMemcpyAsync(controlBuffer, data, bytes, cudaMemcpyHostToDevice,
                            control),
            "cudaMemcpyAsync");
  checkNccl(this, call(controlBuffer), what);
  checkCuda(this,
            cudaMemcpyAsync(data, controlBuffer, bytes, cudaMemcpyDeviceToHost,
                            control),
            "cudaMemcpyAsync");
  checkCuda(this, cudaStreamSynchronize(control), what);
}

std::string blpa_comm::asyncError() {
  std::lock_guard<std::mutex> hold(probeLock);
  ncclResult_t state = ncclSuccess;
  if (!probed || ncclCommGetAsyncError(nccl, &state) != ncclSuccess ||
      state == ncclSuccess || state == ncclInProgress)
    return "";
  return std::string("NCCL reports ") + ncclGetErrorString(state) + " (" +
         ncclGetLastError(nccl) + ")";
}

blpa_comm::BucketEvents &blpa_comm::eventsOf(int64_t bucket) {
  if (size_t(bucket) >= buckets.size())
    buckets.resize(bucket + 1);
  BucketEvents &events = buckets[bucket];
  // Created by the step's first run, which is never recorded into a graph.
  for (cudaEvent_t *event : {&events.ready, &events.summed})
    if (!*event)
      checkCuda(this, cudaEventCreateWithFlags(event, cudaEventDisableTiming),
                "cudaEventCreate");
  return events;
}

namespace {

/// Joins the job: the place from the launcher, the GPU by local rank,
/// NCCL's id from rank 0, the communicator.
void joinJob(blpa_comm &comm) {
  std::string error;
  if (!blpa::comm::readLaunchPlace(std::getenv, comm.place, error))
    failComm(&comm, error);
  blpa::cuda::requireDevice();
  int devices = 0;
  checkCuda(&comm, cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  checkCuda(&comm, cudaSetDevice(comm.place.localRank % devices),
            "cudaSetDevice");
  ncclUniqueId id{};
  if (comm.place.rank == 0)
    checkNccl(&comm, ncclGetUniqueId(&id), "ncclGetUniqueId");
  std::string blob(reinterpret_cast<const char *>(&id), sizeof(id));
  if (!blpa::comm::shareFromRankZero(
          comm.place, blob, std::chrono::duration<double>(comm.timeout).count(),
          error))
    failComm(&comm, error);
  if (blob.size() != sizeof(id))
    failComm(&comm, "rank 0 sent a rendezvous of another blpa version");
  std::memcpy(&id, blob.data(), sizeof(id));
  blpa_comm::Watched watched(*comm.watchdog, "joining NCCL's communicator");
  checkNccl(&comm,
            ncclCommInitRank(&comm.nccl, comm.place.size, id, comm.place.rank),
            "ncclCommInitRank");
}

} // namespace

extern "C" {

blpa_comm *blpa_comm_init(int *, char ***, double timeoutSeconds,
                          blpa_comm_info *info) {
  auto *comm = new blpa_comm();
  comm->timeout = std::chrono::duration_cast<blpa_comm::Clock::duration>(
      std::chrono::duration<double>(timeoutSeconds));
  comm->watchdog = std::make_unique<blpa::comm::Watchdog>(
      comm->timeout,
      [comm](const std::string &what, const std::string &error) {
        char seconds[32];
        std::snprintf(seconds, sizeof(seconds), "%g",
                      std::chrono::duration<double>(comm->timeout).count());
        failComm(comm, error.empty()
                           ? what + " did not finish within " + seconds +
                                 " s: another rank died or hangs "
                                 "(--comm-timeout sets the limit)"
                           : what + " failed: " + error +
                                 ": another rank died or the network failed");
      },
      [comm] { return comm->asyncError(); });
  joinJob(*comm);
  comm->setProbed(true);
  // The sums get the highest priority: the rest of the backward pass fills
  // the device around them, not the other way round.
  int lowest = 0, highest = 0;
  checkCuda(comm, cudaDeviceGetStreamPriorityRange(&lowest, &highest),
            "cudaDeviceGetStreamPriorityRange");
  checkCuda(
      comm,
      cudaStreamCreateWithPriority(&comm->sums, cudaStreamNonBlocking, highest),
      "cudaStreamCreate");
  checkCuda(comm,
            cudaStreamCreateWithFlags(&comm->control, cudaStreamNonBlocking),
            "cudaStreamCreate");
  info->rank = comm->place.rank;
  info->size = comm->place.size;
  return comm;
}

void blpa_comm_allreduce_doubles(blpa_comm *comm, double *values,
                                 int64_t count) {
  comm->onHost(
      values, size_t(count) * sizeof(double),
      "a sum over the ranks (losses, start-up checks)", [&](void *buffer) {
        return ncclAllReduce(buffer, buffer, size_t(count), ncclFloat64,
                             ncclSum, comm->nccl, comm->control);
      });
}

void blpa_comm_broadcast(blpa_comm *comm, void *data, int64_t bytes,
                         int32_t root) {
  comm->onHost(data, size_t(bytes), "a broadcast from rank 0",
               [&](void *buffer) {
                 return ncclBroadcast(buffer, buffer, size_t(bytes), ncclInt8,
                                      root, comm->nccl, comm->control);
               });
}

// The sums run on the GPU, off the host's clock: --profile's timeline has
// no all-reduce rows on this target (the wait ops' times still show).
int32_t blpa_comm_bucket_times(blpa_comm *, int64_t, double *) { return 0; }

void blpa_comm_watch(blpa_comm *comm, const char *what) {
  comm->watchdog->watch(what);
}

void blpa_comm_finalize(blpa_comm *comm) {
  {
    blpa_comm::Watched watched(*comm->watchdog, "leaving NCCL's communicator");
    checkCuda(comm, cudaStreamSynchronize(comm->sums), "the last sums");
    checkNccl(comm, ncclCommFinalize(comm->nccl), "ncclCommFinalize");
    comm->setProbed(false);
    checkNccl(comm, ncclCommDestroy(comm->nccl), "ncclCommDestroy");
  }
  comm->watchdog.reset();
  for (blpa_comm::BucketEvents &events : comm->buckets) {
    cudaEventDestroy(events.ready);
    cudaEventDestroy(events.summed);
  }
  cudaFree(comm->controlBuffer);
  cudaStreamDestroy(comm->sums);
  cudaStreamDestroy(comm->control);
  delete comm;
}

void blpa_comm_abort(blpa_comm *, int status) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(status);
}

void blpa_allreduce_start(blpa_context *ctx, float *bucket, int64_t count,
                          int64_t bucketIndex) {
  blpa_comm *comm = blpa::comm::commOf(ctx);
  cudaStream_t step = blpa::cuda::runtimeOf(ctx).stream;
  blpa_comm::BucketEvents &events = comm->eventsOf(bucketIndex);
  checkCuda(comm, cudaEventRecord(events.ready, step), "cudaEventRecord");
  checkCuda(comm, cudaStreamWaitEvent(comm->sums, events.ready, 0),
            "cudaStreamWaitEvent");
  // The mean over the replicas, as PyTorch's DistributedDataParallel.
  checkNccl(comm,
            ncclAllReduce(bucket, bucket, size_t(count), ncclFloat32, ncclAvg,
                          comm->nccl, comm->sums),
            "ncclAllReduce of a gradient bucket");
  checkCuda(comm, cudaEventRecord(events.summed, comm->sums),
            "cudaEventRecord");
}

void blpa_allreduce_wait(blpa_context *ctx, float *, int64_t,
                         int64_t bucketIndex) {
  blpa_comm *comm = blpa::comm::commOf(ctx);
  checkCuda(comm,
            cudaStreamWaitEvent(blpa::cuda::runtimeOf(ctx).stream,
                                comm->eventsOf(bucketIndex).summed, 0),
            "cudaStreamWaitEvent");
}

} // extern "C"
