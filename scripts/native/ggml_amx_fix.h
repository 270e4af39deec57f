/* Force-included into llama.cpp's build by scripts/setup.sh (docs/hardware.md).
 *
 * GCC's <amxtileintrin.h> (seen in GCC 12, Debian 12's compiler) writes _tile_loadconfig() as
 *     __asm__ volatile ("ldtilecfg\t%X0" :: "m" (*((const void **)__config)));
 * which tells the optimiser that LDTILECFG reads 8 bytes. The tile configuration is 64 bytes, so at -O3 the
 * stores of its rows and column widths are dropped as dead, LDTILECFG loads a garbage configuration and the
 * CPU raises a general-protection fault (SIGSEGV) at ggml's first AMX matrix product: llama.cpp crashes on
 * every Intel Xeon with AMX (Sapphire Rapids and later). This macro, defined after the intrinsic, names all
 * 64 bytes as the operand. Harmless where AMX is absent or the compiler is not GCC (clang uses a builtin).
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#undef _tile_loadconfig
#define _tile_loadconfig(config) __asm__ volatile("ldtilecfg\t%X0" ::"m"(*(const unsigned char(*)[64])(config)))
#endif
