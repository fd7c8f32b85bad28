//===- MpiComm.cpp - Gradient all-reduce over MPI for the CPU target
//-------===//
//
// The data-parallel half of the runtime ABI (blpa_allreduce_start/_wait and
// the driver's blpa_comm_* calls) on MPI, for executables whose buckets are
// in host memory. A worker thread runs the all-reduces one at a time in the
// order they start, so the step's later backward ops run while a bucket is
// summed (MPI's non-blocking collectives progress only inside MPI calls,
// which a step made of kernel calls would not make). The worker and the
// driver's thread each have a communicator of their own (collectives on one
// communicator must come in the same order on every rank, which two threads
// would not keep); with MPI_THREAD_MULTIPLE they call MPI at the same time,
// with an MPI that offers only MPI_THREAD_SERIALIZED one mutex takes turns.
//
//===----------------------------------------------------------------------===//

#include "../Common/Profile.h"
#include "CommOf.h"
#include "blpa/Runtime/Runtime.h"

// The C API only: Open MPI's and MPICH's headers otherwise pull in their
// deprecated C++ bindings, which need a library this one does not link.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct blpa_comm {
  int rank = 0;
  int size = 1;
  std::chrono::duration<double> timeout{0};

  /// The worker's communicator and the driver thread's.
  MPI_Comm buckets = MPI_COMM_NULL, control = MPI_COMM_NULL;
  /// Whether MPI calls must take turns (MPI_THREAD_SERIALIZED).
  bool serialized = false;
  std::mutex mpiLock;

  struct Request {
    float *data;
    int64_t count;
    int64_t bucket;
  };
  /// Per bucket: whether its sum has finished since it last started, and
  /// when that all-reduce was queued, began and ended (profileClock, for
  /// --profile's timeline).
  struct BucketState {
    bool done = false;
    double queued = 0, began = 0, ended = 0;
  };
  std::vector<BucketState> bucketStates;
  std::mutex queueLock;
  std::condition_variable changed;
  std::deque<Request> pending;
  bool stopping = false;
  std::thread worker;

  void runWorker();
  /// Sums `count` floats of a bucket over the replicas, in place (the
  /// worker's communicator).
  void sumBucket(float *data, int64_t count);
  /// Waits for the driver thread's collective `request` until the time-out,
  /// then ends the job with one line naming `what`: a replica that stopped
  /// between steps must not leave the others blocked forever either.
  void complete(MPI_Request &request, const char *what);
  /// Ends the job: `what` did not finish within the time-out.
  [[noreturn]] void timedOut(const std::string &what);
  /// Holds the turn to call MPI when calls must take turns.
  std::unique_lock<std::mutex> turn() {
    return serialized ? std::unique_lock<std::mutex>(mpiLock)
                      : std::unique_lock<std::mutex>();
  }
};

namespace {

[[noreturn]] void failComm(blpa_comm *comm, const std::string &message) {
  std::fprintf(stderr, "blpa runtime error: rank %d of %d: %s\n",
               comm ? comm->rank : 0, comm ? comm->size : 1, message.c_str());
  // Ends the whole job, also the replicas blocked in a collective that this
  // one will never join.
  blpa_comm_abort(comm, 1);
  std::_Exit(1); // blpa_comm_abort does not return; keeps [[noreturn]] honest.
}

void checkMpi(blpa_comm *comm, int status, const char *what) {
  if (status == MPI_SUCCESS)
    return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  failComm(comm, std::string(what) + " failed: " + std::string(text, length));
}

} // namespace

/// Sums in chunks below 2^31 elements (MPI's counts are ints).
void blpa_comm::sumBucket(float *data, int64_t count) {
  const int64_t chunk = int64_t(1) << 30;
  for (int64_t first = 0; first < count; first += chunk) {
    auto hold = turn();
    checkMpi(this,
             MPI_Allreduce(MPI_IN_PLACE, data + first,
                           int(std::min(chunk, count - first)), MPI_FLOAT,
                           MPI_SUM, buckets),
             "MPI_Allreduce");
  }
}

void blpa_comm::complete(MPI_Request &request, const char *what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int finished = 0;
    {
      auto hold = turn();
      checkMpi(this, MPI_Test(&request, &finished, MPI_STATUS_IGNORE),
               "MPI_Test");
    }
    if (finished)
      return;
    if (std::chrono::steady_clock::now() > deadline)
      timedOut(what);
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

void blpa_comm::timedOut(const std::string &what) {
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%g", timeout.count());
  failComm(this, what + " did not finish within " + seconds +
                     " s: another rank died or hangs (--comm-timeout sets "
                     "the limit)");
}

void blpa_comm::runWorker() {
  std::unique_lock<std::mutex> lock(queueLock);
  for (;;) {
    changed.wait(lock, [&] { return stopping || !pending.empty(); });
    if (pending.empty())
      return;
    Request request = pending.front();
    lock.unlock();
    double began = blpa::profileClock();
    sumBucket(request.data, request.count);
    double ended = blpa::profileClock();
    lock.lock();
    BucketState &state = bucketStates[request.bucket];
    state.began = began;
    state.ended = ended;
    state.done = true;
    pending.pop_front();
    changed.notify_all();
  }
}

extern "C" {

blpa_comm *blpa_comm_init(int *argc, char ***argv, double timeoutSeconds,
                          blpa_comm_info *info) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) !=
      MPI_SUCCESS) {
    std::fprintf(stderr, "blpa runtime error: MPI_Init_thread failed (start "
                         "the executable with mpirun or srun)\n");
    std::exit(1);
  }
  auto *comm = new blpa_comm();
  comm->timeout = std::chrono::duration<double>(timeoutSeconds);
  if (provided < MPI_THREAD_SERIALIZED)
    failComm(comm, "this MPI cannot be called from a second thread "
                   "(MPI_THREAD_SERIALIZED); the all-reduces need it");
  comm->serialized = provided < MPI_THREAD_MULTIPLE;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &comm->size);
  checkMpi(comm, MPI_Comm_dup(MPI_COMM_WORLD, &comm->buckets), "MPI_Comm_dup");
  checkMpi(comm, MPI_Comm_dup(MPI_COMM_WORLD, &comm->control), "MPI_Comm_dup");
  comm->worker = std::thread([comm] { comm->runWorker(); });
  info->rank = comm->rank;
  info->size = comm->size;
  return comm;
}

void blpa_comm_allreduce_doubles(blpa_comm *comm, double *values,
                                 int64_t count) {
  MPI_Request request;
  {
    auto hold = comm->turn();
    checkMpi(comm,
             MPI_Iallreduce(MPI_IN_PLACE, values, int(count), MPI_DOUBLE,
                            MPI_SUM, comm->control, &request),
             "MPI_Iallreduce");
  }
  comm->complete(request, "a sum over the ranks (losses, batch-norm "
                          "statistics)");
}

void blpa_comm_broadcast(blpa_comm *comm, void *data, int64_t bytes,
                         int32_t root) {
  auto *chars = static_cast<char *>(data);
  const int64_t chunk = int64_t(1) << 30;
  for (int64_t first = 0; first < bytes; first += chunk) {
    MPI_Request request;
    {
      auto hold = comm->turn();
      checkMpi(comm,
               MPI_Ibcast(chars + first, int(std::min(chunk, bytes - first)),
                          MPI_BYTE, root, comm->control, &request),
               "MPI_Ibcast");
    }
    comm->complete(request, "a broadcast from rank 0");
  }
}

int32_t blpa_comm_bucket_times(blpa_comm *comm, int64_t bucket,
                               double times[3]) {
  std::lock_guard<std::mutex> lock(comm->queueLock);
  if (bucket < 0 || size_t(bucket) >= comm->bucketStates.size() ||
      comm->bucketStates[bucket].ended == 0)
    return 0;
  const blpa_comm::BucketState &t = comm->bucketStates[bucket];
  times[0] = t.queued;
  times[1] = t.began;
  times[2] = t.ended;
  return 1;
}

void blpa_comm_finalize(blpa_comm *comm) {
  {
    std::lock_guard<std::mutex> lock(comm->queueLock);
    comm->stopping = true;
  }
  comm->changed.notify_all();
  comm->worker.join();
  MPI_Comm_free(&comm->buckets);
  MPI_Comm_free(&comm->control);
  MPI_Finalize();
  delete comm;
}

void blpa_comm_abort(blpa_comm *comm, int status) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (comm && comm->size > 1)
    MPI_Abort(MPI_COMM_WORLD, status);
  std::_Exit(status);
}

void blpa_allreduce_start(blpa_context *ctx, float *bucket, int64_t count,
                          int64_t bucketIndex) {
  blpa_comm *comm = blpa::comm::commOf(ctx);
  std::lock_guard<std::mutex> lock(comm->queueLock);
  if (size_t(bucketIndex) >= comm->bucketStates.size())
    comm->bucketStates.resize(bucketIndex + 1);
  blpa_comm::BucketState &state = comm->bucketStates[bucketIndex];
  state.done = false;
  state.queued = blpa::profileClock();
  comm->pending.push_back({bucket, count, bucketIndex});
  comm->changed.notify_all();
}

void blpa_allreduce_wait(blpa_context *ctx, float *bucket, int64_t count,
                         int64_t bucketIndex) {
  blpa_comm *comm = blpa::comm::commOf(ctx);
  {
    std::unique_lock<std::mutex> lock(comm->queueLock);
    bool finished = comm->changed.wait_for(lock, comm->timeout, [&] {
      return comm->bucketStates[bucketIndex].done;
    });
    if (!finished)
      comm->timedOut("the all-reduce of gradient bucket " +
                     std::to_string(bucketIndex));
  }
  // The mean over the replicas, as PyTorch's DistributedDataParallel.
  const float scale = 1.0f / float(comm->size);
  for (int64_t i = 0; i < count; ++i)
    bucket[i] *= scale;
}

} // extern "C"
