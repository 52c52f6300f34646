/* FT_EXPORT: the mark of ftengine's public API.
 *
 * libftengine.so is compiled with hidden visibility (and linked with a version script), so a
 * symbol is exported only when its declaration in include/ftengine/ carries FT_EXPORT: what an
 * application can reach is exactly what these headers promise. For the static library the mark
 * changes nothing. Usable from C and C++. */
#ifndef FTENGINE_EXPORT_H_
#define FTENGINE_EXPORT_H_

/* C++: the standard attribute syntax, so it composes with [[nodiscard]] and [[noreturn]]. */
#if defined(__cplusplus) && (defined(__GNUC__) || defined(__clang__))
#define FT_EXPORT [[gnu::visibility("default")]]
#elif defined(__GNUC__) || defined(__clang__)
#define FT_EXPORT __attribute__((visibility("default")))
#else
#define FT_EXPORT
#endif

/* FT_HIDDEN (C++): a member of an exported class that applications cannot use (the pimpl, the
 * constructors and factory the library calls itself) stays out of the dynamic symbol table. */
#if defined(__cplusplus) && (defined(__GNUC__) || defined(__clang__))
#define FT_HIDDEN [[gnu::visibility("hidden")]]
#else
#define FT_HIDDEN
#endif

#endif /* FTENGINE_EXPORT_H_ */
