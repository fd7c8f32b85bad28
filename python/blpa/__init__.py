"""Python side of blpa: model builders and a wrapper around blpa-opt and the
executables it produces. Runs under Debian's /usr/bin/python3 (torch, onnx,
numpy), or the .venv that scripts/install-deps makes from it (the same
packages plus onnxruntime, for the tests)."""
