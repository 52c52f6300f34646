# What applications link and what `cmake --install` puts in a prefix.
#
# libftengine.so (SONAME libftengine.so.<major>, only the public API exported: FT_EXPORT and
# ftengine.map) and libftengine.a are made of the same objects as the internal component
# libraries (one compilation, position-independent, hidden visibility: cmake/FtTarget.cmake),
# so an application links one library instead of the components. Imported as
# ftengine::ftengine (shared) and ftengine::ftengine_static by find_package(ftengine), and
# described by ftengine.pc for pkg-config. The repository's own tests and tools keep linking
# the component libraries.
# The components are what ft_world links, transitively: walking the link graph (rather than
# listing them) keeps the library whole when a component is split or added. The imported targets
# met on the way (ISA-L, rdma-core, hwloc, threads) are what the library itself links.
set(FT_LIBRARY_COMPONENTS ft_world)
set(FT_LIBRARY_DEPENDENCIES "")
set(ft_pending ft_world)
while(ft_pending)
  list(POP_FRONT ft_pending ft_target)
  get_target_property(ft_links ${ft_target} LINK_LIBRARIES)
  foreach(ft_link IN LISTS ft_links)
    if(TARGET ${ft_link})
      get_target_property(ft_aliased ${ft_link} ALIASED_TARGET)
      if(ft_aliased)
        set(ft_link ${ft_aliased})
      endif()
      get_target_property(ft_imported ${ft_link} IMPORTED)
      if(ft_imported)
        list(APPEND FT_LIBRARY_DEPENDENCIES ${ft_link})
      elseif(NOT ft_link IN_LIST FT_LIBRARY_COMPONENTS)
        list(APPEND FT_LIBRARY_COMPONENTS ${ft_link})
        list(APPEND ft_pending ${ft_link})
      endif()
    elseif(ft_link AND NOT ft_link MATCHES "^\\$<")
      list(APPEND FT_LIBRARY_DEPENDENCIES ${ft_link})  # a plain library name (-l)
    endif()
  endforeach()
endwhile()
list(REMOVE_DUPLICATES FT_LIBRARY_DEPENDENCIES)
message(VERBOSE "libftengine: ${FT_LIBRARY_COMPONENTS}; links ${FT_LIBRARY_DEPENDENCIES}")
set(ft_library_objects "")
foreach(component IN LISTS FT_LIBRARY_COMPONENTS)
  list(APPEND ft_library_objects $<TARGET_OBJECTS:${component}>)
endforeach()

add_library(ftengine SHARED ${ft_library_objects})
set_target_properties(ftengine PROPERTIES
  LINKER_LANGUAGE CXX
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}
  LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/ftengine.map)
target_link_libraries(ftengine PRIVATE ${FT_LIBRARY_DEPENDENCIES})
# --no-undefined: the library must carry every dependency itself (a C program links it alone).
target_link_options(ftengine PRIVATE
  "LINKER:--version-script=${PROJECT_SOURCE_DIR}/cmake/ftengine.map" "LINKER:--no-undefined")

add_library(ftengine_static STATIC ${ft_library_objects})
set_target_properties(ftengine_static PROPERTIES LINKER_LANGUAGE CXX OUTPUT_NAME ftengine)
# A static archive carries none of its dependencies: its users link them, and C programs (whose
# link line CMake drives with the C compiler) also need the C++ runtime.
target_link_libraries(ftengine_static INTERFACE ${FT_LIBRARY_DEPENDENCIES} stdc++ m)

foreach(library ftengine ftengine_static)
  target_include_directories(${library} INTERFACE
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  ft_target_settings(${library})
endforeach()
add_library(ftengine::ftengine ALIAS ftengine)
add_library(ftengine::ftengine_static ALIAS ftengine_static)

install(DIRECTORY include/ftengine DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS ftengine ftengine_static EXPORT ftengineTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT ftengineTargets NAMESPACE ftengine:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ftengine)
include(CMakePackageConfigHelpers)
configure_package_config_file(cmake/ftengineConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/ftengineConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ftengine)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ftengineConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ftengineConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/ftengineConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ftengine)

# ftengine.pc, relocatable: its prefix is found from where the file lies (${pcfiledir}), so the
# tree works wherever `cmake --install --prefix` put it.
file(RELATIVE_PATH FT_PC_PREFIX_FROM_PCDIR "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
configure_file(cmake/ftengine.pc.in ${CMAKE_CURRENT_BINARY_DIR}/ftengine.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ftengine.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
