# blpa-cuda-emulation-test: the CUDA runtime's own kernel source, run on the
# host, against the CPU runtime. Needs no GPU, so CI runs it.
#
# rewrite_launches.py turns every kernel launch of the files below into a
# call of the emulator (a build step, so that the test always runs the
# current kernels); the host compiler then builds them with this folder's
# cuda_runtime.h, cublas_v2.h and cudnn.h standing in for the toolkit's
# under the real CudaRuntime.h. The CPU runtime is linked as the renamed
# copy CudaKernelTest.cmake makes (include that file first).

if(NOT BLPA_CPU_REFERENCE_ARCHIVE)
  message(FATAL_ERROR "include CudaKernelTest.cmake before CudaEmulation.cmake")
endif()

find_program(BLPA_EMULATION_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH
  REQUIRED)

# A function, so that its variables stay out of the including directory.
function(blpa_add_cuda_emulation_test)
  set(dir ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/CudaEmulation/CUDA)
  set(rewriter ${dir}/rewrite_launches.py)
  # The kernel files under test and the headers with launches they include
  # (found next to the rewritten files before the originals), then the
  # emulation's own checks.
  set(inputs "")
  foreach(file BatchNorm.cu Dropout.cu Elementwise.cu Embedding.cu
      LayerNorm.cu Layout.cu
      Loss.cu Pooling.cu ProbabilityCodes.cu Quantize.cu Packing.cuh)
    list(APPEND inputs ${PROJECT_SOURCE_DIR}/lib/Runtime/CUDA/${file})
  endforeach()
  list(APPEND inputs ${dir}/EmulatorCheck.cu)

  set(sources ${dir}/CudaEmulationTest.cpp ${dir}/Emulator.cpp)
  foreach(input IN LISTS inputs)
    get_filename_component(file ${input} NAME)
    string(REGEX REPLACE "\\.cu$" ".cpp" output ${out}/${file})
    add_custom_command(
      OUTPUT ${output}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
      COMMAND ${BLPA_EMULATION_PYTHON} ${rewriter} ${input} ${output}
      DEPENDS ${input} ${rewriter}
      COMMENT "Rewriting the kernel launches of ${file} for the emulation"
      VERBATIM)
    list(APPEND sources ${output})
  endforeach()

  add_executable(blpa-cuda-emulation-test ${sources})
  add_dependencies(blpa-cuda-emulation-test blpa_runtime_cpu_ref)
  # This folder first: its stand-ins for the CUDA headers must win.
  target_include_directories(blpa-cuda-emulation-test BEFORE PRIVATE
    ${dir} ${PROJECT_SOURCE_DIR}/lib/Runtime/CUDA)
  # No contraction into FMAs: the emulation's float operations round as the
  # device's explicitly rounded ones do. Exceptions carry kernel errors
  # (failf) to the test.
  target_compile_options(blpa-cuda-emulation-test PRIVATE
    -ffp-contract=off -fexceptions -Wno-unknown-pragmas)
  target_link_libraries(blpa-cuda-emulation-test PRIVATE
    ${BLPA_CPU_REFERENCE_ARCHIVE} DNNL::dnnl OpenMP::OpenMP_CXX)
  add_test(NAME blpa-cuda-emulation-test COMMAND blpa-cuda-emulation-test)
endfunction()

blpa_add_cuda_emulation_test()
