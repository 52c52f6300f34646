# Per-target compile settings: warnings and sanitizers are set on each of our targets, never
# directory-wide, so that consumers of the exported targets inherit none of them.
function(ft_target_settings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  if(FT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(FT_SANITIZE)
    target_compile_options(${target} PUBLIC -fsanitize=address,undefined
      -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()
