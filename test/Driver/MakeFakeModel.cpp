//===- MakeFakeModel.cpp - The ONNX model of the driver's test fixture ----===//
//
// Usage: blpa-driver-make-fake-model OUTDIR
// Writes OUTDIR/fake_linear.onnx (the Gemm classifier of LinearModel.h with
// random weights) and OUTDIR/FakeLinearModelData.c, which embeds it as
// blpa_model_onnx the way blpa-opt embeds a compiled model. The weight is
// stored as raw_data and the bias as float_data so that the driver's
// reading of both is exercised.
//
//===----------------------------------------------------------------------===//

#include "FileUtil.h"
#include "LinearModel.h"
#include "Random.h"

#include <onnx/onnx_pb.h>

#include <cstdio>
#include <string>
#include <vector>

using namespace blpa::test;

namespace {

void addValueInfo(onnx::ValueInfoProto *info, const std::string &name,
                  std::vector<int64_t> dims) {
  info->set_name(name);
  auto *tensorType = info->mutable_type()->mutable_tensor_type();
  tensorType->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t dim : dims)
    tensorType->mutable_shape()->add_dim()->set_dim_value(dim);
}

onnx::TensorProto *addInitializer(onnx::GraphProto *graph,
                                  const std::string &name,
                                  std::vector<int64_t> dims) {
  onnx::TensorProto *tensor = graph->add_initializer();
  tensor->set_name(name);
  tensor->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t dim : dims)
    tensor->add_dims(dim);
  return tensor;
}

onnx::ModelProto makeModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("blpa-driver-make-fake-model");
  model.add_opset_import()->set_version(13);
  onnx::GraphProto *graph = model.mutable_graph();
  graph->set_name("fake_linear");
  addValueInfo(graph->add_input(), "x", {batchSize, features});
  addValueInfo(graph->add_output(), "logits", {batchSize, classes});

  onnx::NodeProto *gemm = graph->add_node();
  gemm->set_op_type("Gemm");
  gemm->set_name("fc");
  gemm->add_input("x");
  gemm->add_input(weightName);
  gemm->add_input(biasName);
  gemm->add_output("logits");
  onnx::AttributeProto *transB = gemm->add_attribute();
  transB->set_name("transB");
  transB->set_type(onnx::AttributeProto::INT);
  transB->set_i(1);

  blpa::driver::Random random(42);
  std::vector<float> weight(classes * features);
  for (float &value : weight)
    value = 0.01f * random.normal();
  addInitializer(graph, weightName, {classes, features})
      ->set_raw_data(weight.data(), weight.size() * sizeof(float));
  onnx::TensorProto *bias = addInitializer(graph, biasName, {classes});
  for (int64_t k = 0; k < classes; ++k)
    bias->add_float_data(0.01f * k);
  float inputMean = 0;
  addInitializer(graph, inputMeanName, {1})
      ->set_raw_data(&inputMean, sizeof(inputMean));
  return model;
}

std::string cArray(const std::string &bytes) {
  std::string text = "#include <stdint.h>\n\n"
                     "const uint8_t blpa_model_onnx[] = {";
  for (size_t i = 0; i < bytes.size(); ++i) {
    text += i % 16 ? " " : "\n   ";
    text += std::to_string(static_cast<unsigned char>(bytes[i])) + ",";
  }
  return text + "\n};\nconst int64_t blpa_model_onnx_size = "
                "sizeof(blpa_model_onnx);\n";
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 1;
  }
  std::string dir = argv[1];
  std::string bytes = makeModel().SerializeAsString();
  std::string source = cArray(bytes);
  blpa::driver::writeFileAtomically(dir + "/fake_linear.onnx", bytes.data(),
                                    bytes.size());
  blpa::driver::writeFileAtomically(dir + "/FakeLinearModelData.c",
                                    source.data(), source.size());
  return 0;
}
