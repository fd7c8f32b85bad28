# blpa-cuda-kernel-test: every CUDA runtime kernel against the CPU runtime.
#
# Both runtimes define the same extern "C" blpa_* symbols, so the test links a
# copy of libblpa_runtime_cpu.a whose defined blpa_* symbols (and the CPU
# runtime's own references to them) are renamed cpuref_blpa_*; the C++
# internals live in blpa::cpu and blpa::cuda and do not clash.
#
# This file has two modes:
#  * included from test/Runtime/CMakeLists.txt (inside if(BLPA_HAVE_CUDA)):
#    defines the renaming step and the test;
#  * run as `cmake -DNM=... -DOBJCOPY=... -DINPUT=... -DOUTPUT=... -P <this>`
#    by that step: writes OUTPUT, the renamed copy of the archive INPUT.

if(CMAKE_SCRIPT_MODE_FILE)
  # Lists the symbols of `archive` that are defined and global and start
  # with blpa_ into `out`.
  function(blpa_global_runtime_symbols archive out)
    execute_process(COMMAND ${NM} -g --defined-only ${archive}
      OUTPUT_VARIABLE listing RESULT_VARIABLE status ERROR_VARIABLE errors)
    if(NOT status EQUAL 0)
      message(FATAL_ERROR "${NM} ${archive} failed: ${errors}")
    endif()
    string(REPLACE "\n" ";" lines "${listing}")
    set(symbols "")
    foreach(line IN LISTS lines)
      if(line MATCHES "^[0-9a-fA-F]* +[A-Za-z] +(blpa_[A-Za-z0-9_]+)$")
        list(APPEND symbols ${CMAKE_MATCH_1})
      endif()
    endforeach()
    list(REMOVE_DUPLICATES symbols)
    set(${out} ${symbols} PARENT_SCOPE)
  endfunction()

  blpa_global_runtime_symbols(${INPUT} symbols)
  if(NOT symbols)
    message(FATAL_ERROR "no blpa_* symbols defined in ${INPUT}")
  endif()
  set(map "")
  foreach(symbol IN LISTS symbols)
    string(APPEND map "${symbol} cpuref_${symbol}\n")
  endforeach()
  file(WRITE ${OUTPUT}.map "${map}")
  # Into a temporary first, so that a failed step leaves no half-made archive.
  execute_process(
    COMMAND ${OBJCOPY} --redefine-syms=${OUTPUT}.map ${INPUT} ${OUTPUT}.tmp
    RESULT_VARIABLE status ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${OBJCOPY} ${INPUT} failed: ${errors}")
  endif()
  blpa_global_runtime_symbols(${OUTPUT}.tmp left)
  if(left)
    message(FATAL_ERROR "still defined after renaming: ${left}")
  endif()
  file(RENAME ${OUTPUT}.tmp ${OUTPUT})
  return()
endif()

set(BLPA_CPU_REFERENCE_ARCHIVE
  ${CMAKE_CURRENT_BINARY_DIR}/libblpa_runtime_cpu_ref.a)
foreach(tool NM OBJCOPY)
  if(NOT CMAKE_${tool})
    string(TOLOWER ${tool} name)
    find_program(CMAKE_${tool} ${name} REQUIRED)
  endif()
endforeach()
# DEPENDS on the target re-runs the step whenever the CPU runtime is rebuilt
# (and on this file, when the renaming changes).
add_custom_command(
  OUTPUT ${BLPA_CPU_REFERENCE_ARCHIVE}
  COMMAND ${CMAKE_COMMAND}
    -DNM=${CMAKE_NM}
    -DOBJCOPY=${CMAKE_OBJCOPY}
    -DINPUT=$<TARGET_FILE:blpa_runtime_cpu>
    -DOUTPUT=${BLPA_CPU_REFERENCE_ARCHIVE}
    -P ${CMAKE_CURRENT_LIST_FILE}
  DEPENDS blpa_runtime_cpu $<TARGET_FILE:blpa_runtime_cpu>
    ${CMAKE_CURRENT_LIST_FILE}
  COMMENT "Renaming the CPU runtime's blpa_* symbols to cpuref_blpa_*"
  VERBATIM)
add_custom_target(blpa_runtime_cpu_ref DEPENDS ${BLPA_CPU_REFERENCE_ARCHIVE})

add_executable(blpa-cuda-kernel-test
  ${CMAKE_CURRENT_LIST_DIR}/CudaKernelTest.cpp)
add_dependencies(blpa-cuda-kernel-test blpa_runtime_cpu_ref)
# The renamed archive by path (a dependency of the link step, so the test
# relinks when it changes), with the CPU runtime's own dependencies.
target_link_libraries(blpa-cuda-kernel-test PRIVATE
  ${BLPA_CPU_REFERENCE_ARCHIVE} DNNL::dnnl OpenMP::OpenMP_CXX
  blpa_runtime_cuda CUDA::cudart_static)
add_test(NAME blpa-cuda-kernel-test COMMAND blpa-cuda-kernel-test)
# Without a GPU the test prints one `skipped` line and exits 0.
set_tests_properties(blpa-cuda-kernel-test PROPERTIES
  SKIP_REGULAR_EXPRESSION "blpa-cuda-kernel-test: skipped")
# scripts/gpu-bundle carries the test to a GPU machine with the Debian
# libraries it needs (oneDNN, OpenMP) in blpa-cuda-libs/ beside it.
set_target_properties(blpa-cuda-kernel-test PROPERTIES
  BUILD_RPATH "$ORIGIN/blpa-cuda-libs")
target_link_options(blpa-cuda-kernel-test PRIVATE -Wl,--disable-new-dtags)
