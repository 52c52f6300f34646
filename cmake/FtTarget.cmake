# Per-target compile settings: warnings and sanitizers are set on each of our targets, never
# directory-wide, so that consumers of the exported targets inherit none of them.
function(ft_target_settings target)
  # The component libraries' objects also make libftengine.so (cmake/FtPackage.cmake): they are
  # position-independent, and hidden unless a public header marks them FT_EXPORT.
  set_target_properties(${target} PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor>)
  if(FT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(FT_SANITIZE)
    target_compile_options(${target} PUBLIC -fsanitize=address,undefined
      -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()
