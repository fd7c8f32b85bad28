"""Writes a tiny model whose initializers are ONNX external data, for the
import tests: Y = Reshape(Gemm(X, W, B, transB=1), S) with X [N, 4],
W [3, 4] = 1..12, B [3] = 0.1..0.3 and S = [-1, 1, 3] (int64), all three stored
at LOCATION, one after the other from --offset.

usage: external_model.py MODEL LOCATION [--offset N] [--length N|none]
                         [--data FILE] [--data-bytes N]

--length overrides W's length entry ("none" leaves it out); --data writes
the data file (--offset zero bytes, then the tensors), cut to --data-bytes.
The model is written as is: LOCATION is not checked.
"""

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def external(name, array, location, offset, length):
    tensor = numpy_helper.from_array(array, name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = [("location", location), ("offset", str(offset))]
    if length is not None:
        entries.append(("length", str(length)))
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("location")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--length", default=None)
    parser.add_argument("--data")
    parser.add_argument("--data-bytes", type=int)
    args = parser.parse_args()

    arrays = [("W", np.arange(1, 13, dtype=np.float32).reshape(3, 4)),
              ("B", np.array([0.1, 0.2, 0.3], dtype=np.float32)),
              ("S", np.array([-1, 1, 3], dtype=np.int64))]
    initializers, offset = [], args.offset
    for name, array in arrays:
        length = array.nbytes
        if name == "W" and args.length is not None:
            length = None if args.length == "none" else int(args.length)
        initializers.append(external(name, array, args.location, offset,
                                     length))
        offset += array.nbytes
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["X", "W", "B"], ["G"], transB=1),
         helper.make_node("Reshape", ["G", "S"], ["Y"])],
        "external",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 1, 3])],
        initializers)
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 15)])
    # Serialized directly: onnx.save_model would act on the references.
    with open(args.model, "wb") as f:
        f.write(model.SerializeToString())
    if args.data:
        data = bytes(args.offset) + b"".join(a.tobytes() for _, a in arrays)
        if args.data_bytes is not None:
            data = data[:args.data_bytes]
        with open(args.data, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
