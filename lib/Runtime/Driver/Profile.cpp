//===- Profile.cpp - Per-op times of the training step (--profile) --------===//

#include "Profile.h"
#include "Error.h"
#include "FileUtil.h"
#include "Replicas.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <thread>

namespace blpa::driver {

namespace {

/// `text` as a JSON string.
std::string quoted(const std::string &text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof(escape), "\\u%04x", c);
      out += escape;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.9g", value);
  return text;
}

/// The host CPU's name (/proc/cpuinfo's first "model name"), or "unknown".
std::string cpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size())
        return line.substr(colon + 2);
    }
  return "unknown";
}

} // namespace

StepProfiler::StepProfiler(const Manifest &manifest, std::string path)
    : manifest(manifest), path(std::move(path)) {
  if (manifest.ops.empty() || manifest.modelFingerprint.empty())
    throw DriverError("--profile needs an executable whose manifest names "
                      "the step's ops; recompile it with this blpa-opt");
  checkWritableDestination(this->path, "--profile");
  seconds.assign(manifest.ops.size(), 0);
  stats.resize(manifest.ops.size());
  profile.num_ops = int64_t(seconds.size());
  profile.seconds = seconds.data();
  if (manifest.gradientBuckets) {
    opBegin.assign(seconds.size(), 0);
    opEnd.assign(seconds.size(), 0);
    profile.op_begin = opBegin.data();
    profile.op_end = opEnd.data();
    for (const OpRecord &op : manifest.ops)
      waits.push_back(op.name == "blpa.allreduce_wait");
  }
}

void StepProfiler::recordCommunication() {
  for (size_t i = 0; i < opBegin.size(); ++i)
    if (waits[i])
      communication.waiting += opEnd[i] - opBegin[i];
  for (int64_t b = 0; b < manifest.gradientBuckets; ++b) {
    double t[3];
    if (!replicas().bucketTimes(b, t))
      continue;
    communication.allreduce += t[2] - t[1];
    // The step's ops run one after another, so their overlaps with the
    // all-reduce add up; the waits are not work that hid it.
    for (size_t i = 0; i < opBegin.size(); ++i)
      if (!waits[i])
        communication.overlapped += std::max(
            0.0, std::min(opEnd[i], t[2]) - std::max(opBegin[i], t[1]));
  }
}

std::string StepProfiler::lastStepTimeline() const {
  double stepBegin = *std::min_element(opBegin.begin(), opBegin.end());
  auto at = [&](double t) { return number(t - stepBegin); };
  std::string ops, allreduces;
  for (size_t i = 0; i < opBegin.size(); ++i)
    ops += std::string(i ? ", " : "") + "[" + at(opBegin[i]) + ", " +
           at(opEnd[i]) + (waits[i] ? ", \"wait\"]" : "]");
  for (int64_t b = 0; b < manifest.gradientBuckets; ++b) {
    double t[3];
    if (replicas().bucketTimes(b, t))
      allreduces += std::string(allreduces.empty() ? "" : ", ") + "[" +
                    at(t[0]) + ", " + at(t[1]) + ", " + at(t[2]) + "]";
  }
  return "{\"ops\": [" + ops + "],\n   \"allreduces\": [" + allreduces + "]}";
}

void StepProfiler::endStep(double stepSeconds) {
  if (stepsSeen++ > 0) {
    bool first = stepsSeen == 2;
    for (size_t i = 0; i < seconds.size(); ++i) {
      stats[i].sum += seconds[i];
      stats[i].min = first ? seconds[i] : std::min(stats[i].min, seconds[i]);
    }
    stepSum += stepSeconds;
    stepMin = first ? stepSeconds : std::min(stepMin, stepSeconds);
    if (!opBegin.empty())
      recordCommunication();
  }
  std::fill(seconds.begin(), seconds.end(), 0.0);
}

void StepProfiler::write(int32_t threads) const {
  if (stepsSeen < 2)
    throw DriverError("--profile " + path +
                      ": needs at least 2 steps (the first is warm-up); "
                      "give --steps 2 or more");
  double steps = double(stepsSeen - 1);
  std::string json = "{\"format\": \"blpa-profile 1\",\n";
  json += " \"model\": " + quoted(manifest.modelFingerprint) + ",\n";
  json += " \"batch_size\": " + std::to_string(manifest.batchSize()) + ",\n";
  json += " \"target\": " + quoted(manifest.target) + ",\n";
  json += " \"machine\": {\"cpu\": " + quoted(cpuModel()) +
          ", \"threads\": " + std::to_string(threads) +
          ", \"hardware_threads\": " +
          std::to_string(std::thread::hardware_concurrency()) + "},\n";
  json += " \"steps\": " + std::to_string(stepsSeen - 1) +
          ", \"warmup_steps\": 1,\n";
  json += " \"step_seconds\": {\"mean\": " + number(stepSum / steps) +
          ", \"min\": " + number(stepMin) + "},\n";
  json += " \"ops\": [";
  for (size_t i = 0; i < manifest.ops.size(); ++i) {
    const OpRecord &op = manifest.ops[i];
    json += std::string(i ? ",\n  " : "\n  ") + "{\"index\": " +
            std::to_string(i) + ", \"op\": " + quoted(op.name) +
            ", \"node\": " + quoted(op.node) +
            ", \"shapes\": " + quoted(op.shapes) +
            ", \"calls\": " + std::to_string(op.calls) +
            ", \"mean_seconds\": " + number(stats[i].sum / steps) +
            ", \"min_seconds\": " + number(stats[i].min) +
            ", \"flops\": " + std::to_string(op.flops) +
            ", \"bytes\": " + std::to_string(op.bytes) + "}";
  }
  json += "\n ]";
  if (!opBegin.empty())
    json +=
        ",\n \"data_parallel\": {\"ranks\": " +
        std::to_string(replicas().size) +
        ", \"buckets\": " + std::to_string(manifest.gradientBuckets) +
        ", \"allreduce_seconds\": " + number(communication.allreduce / steps) +
        ", \"overlapped_seconds\": " +
        number(communication.overlapped / steps) +
        ", \"wait_seconds\": " + number(communication.waiting / steps) +
        ",\n  \"last_step\": " + lastStepTimeline() + "}";
  json += "}\n";
  writeFileAtomically(path, json.data(), json.size());
}

} // namespace blpa::driver
