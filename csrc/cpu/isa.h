// CPU instruction-set dispatch for the hot loops.
#pragma once

// Functions marked OCC_CPU_CLONES are built twice, for AVX2 and for the baseline ISA; the loader picks one at run
// time (GCC/Clang function multi-versioning). No FMA: the results stay bit-identical between the two builds.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(OCCRECON_NO_CLONES)
#define OCC_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define OCC_CPU_CLONES
#endif
