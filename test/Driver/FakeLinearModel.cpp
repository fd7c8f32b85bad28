//===- FakeLinearModel.cpp - A hand-written "generated object" ------------===//
//
// Stands in for blpa-opt's output so that the driver can be tested before
// the compiler exists: the manifest, the step functions and (in
// FakeLinearModelData.c, made by MakeFakeModel) the embedded ONNX model.
// Built twice: as a --train object and, with BLPA_FAKE_INFER, as an --infer
// object that defines no blpa_train_step.
//
//===----------------------------------------------------------------------===//

#include "LinearModel.h"

#include "blpa/Runtime/Runtime.h"

using namespace blpa::test;

namespace {

/// The arena holds the step's temporaries, as in a generated object.
struct ArenaLayout {
  float logits[batchSize * classes];
  float dlogits[batchSize * classes];
  float dweight[classes * features];
  float dbias[classes];
};

} // namespace

#define BLPA_FAKE_TENSORS                                                      \
  "input 2 64 784 x\n"                                                         \
  "output 2 64 10 logits\n"                                                    \
  "param 0 trainable 2 10 784 fc.weight\n"                                     \
  "param 1 trainable 1 10 fc/bias\n"                                           \
  "param 2 state 1 1 input mean\n"

#ifdef BLPA_FAKE_INFER
extern "C" const char blpa_manifest[] = "blpa-manifest 1\n"
                                        "mode infer\n"
                                        "arena 65536\n" BLPA_FAKE_TENSORS;
#else
extern "C" const char blpa_manifest[] = "blpa-manifest 1\n"
                                        "mode train\n"
                                        "arena 65536\n"
                                        "threads 1\n"
                                        "labels 1 64\n" BLPA_FAKE_TENSORS;

static_assert(sizeof(ArenaLayout) <= 65536, "arena in the manifest too small");

extern "C" void blpa_train_step(blpa_context *ctx, uint8_t *arena,
                                float *const *params, float *const *momenta,
                                float *const *grads, void *const *inputs,
                                void *const *outputs) {
  auto *temps = reinterpret_cast<ArenaLayout *>(arena);
  const auto *x = static_cast<const float *>(inputs[0]);
  const auto *labels = static_cast<const int64_t *>(inputs[1]);
  linearForward(x, params[weightIndex], params[biasIndex], temps->logits);
  *static_cast<float *>(outputs[0]) =
      softmaxCrossEntropy(temps->logits, labels, temps->dlogits);
  linearBackward(x, temps->dlogits, temps->dweight, temps->dbias);
  blpa_sgd_update(ctx, params[weightIndex], temps->dweight,
                  momenta[weightIndex], grads[weightIndex], classes * features);
  blpa_sgd_update(ctx, params[biasIndex], temps->dbias, momenta[biasIndex],
                  grads[biasIndex], classes);
  // A state parameter, updated like batch-norm running statistics.
  if (!ctx->skip_update)
    params[inputMeanIndex][0] =
        0.9f * params[inputMeanIndex][0] + 0.1f * batchMean(x);
}
#endif

extern "C" void blpa_forward(blpa_context *ctx, uint8_t *arena,
                             float *const *params, void *const *inputs,
                             void *const *outputs) {
  linearForward(static_cast<const float *>(inputs[0]), params[weightIndex],
                params[biasIndex], static_cast<float *>(outputs[0]));
}
