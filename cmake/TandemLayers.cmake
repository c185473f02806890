# One CMake object library per folder of the code, each a layer of the
# architecture (docs/architecture.md#layers). A layer names the layers it
# uses; its files may include their headers and no others, which
# tests/layers/check_layers.py checks against the table this writes to
# ${PROJECT_BINARY_DIR}/layers.txt. libtandem is all the layers linked
# together.
#
#   tandem_layer(NAME DIR SOURCES... [USES layers...] [LIBS targets...])
#
# A layer without SOURCES holds headers only.
function(tandem_layer name dir)
  cmake_parse_arguments(ARG "" "" "SOURCES;USES;LIBS" ${ARGN})
  set(target tandem_${name})
  if(ARG_SOURCES)
    add_library(${target} OBJECT ${ARG_SOURCES})
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    target_compile_features(${target} PUBLIC cxx_std_20)
    set(scope PUBLIC)
  else()
    add_library(${target} INTERFACE)
    set(scope INTERFACE)
  endif()
  # Private headers are named from src/ ("transport/wire.hpp") or from the
  # project root ("ml_ranks/serving/batching.hpp"), public ones as <tandem/...>.
  target_include_directories(${target} ${scope} ${PROJECT_SOURCE_DIR}/include
                             ${PROJECT_BINARY_DIR}/include ${PROJECT_SOURCE_DIR}/src
                             ${PROJECT_SOURCE_DIR})
  set(uses_targets)
  foreach(use IN LISTS ARG_USES)
    list(APPEND uses_targets tandem_${use})
  endforeach()
  target_link_libraries(${target} ${scope} MPI::MPI_CXX ${uses_targets} ${ARG_LIBS})
  set_property(GLOBAL APPEND PROPERTY TANDEM_LAYERS ${name})
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/${dir})
  list(JOIN ARG_USES " " uses_text)
  set_property(GLOBAL APPEND_STRING PROPERTY TANDEM_LAYER_TABLE "${name} ${rel} : ${uses_text}\n")
endfunction()

# A folder outside libtandem that uses its layers: the command (launcher/),
# the Python package (python/), the benchmarks (bench/). Nothing is built
# here; the folder joins the layer table so that its includes are checked
# like a layer's, and no layer may include its headers.
#
#   tandem_top_layer(NAME DIR [USES layers...])
function(tandem_top_layer name dir)
  cmake_parse_arguments(ARG "" "" "USES" ${ARGN})
  get_filename_component(absolute ${dir} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${absolute})
  list(JOIN ARG_USES " " uses_text)
  set_property(GLOBAL APPEND_STRING PROPERTY TANDEM_LAYER_TABLE "${name} ${rel} : ${uses_text}\n")
endfunction()

# Writes the layer table once every layer is defined.
function(tandem_write_layer_table)
  get_property(table GLOBAL PROPERTY TANDEM_LAYER_TABLE)
  file(WRITE ${PROJECT_BINARY_DIR}/layers.txt
       "# layer folder : layers it uses (written by cmake/TandemLayers.cmake)\n${table}")
endfunction()
